package main

// ListenSection holds the listener addresses; an empty address disables
// the listener (except http, which is always on).
type ListenSection struct {
	Inbound    string `yaml:"inbound"`
	Relay      string `yaml:"relay"`
	Submission string `yaml:"submission"`
	HTTP       string `yaml:"http"`
}

func (s *ListenSection) setDefaults() {
	*s = ListenSection{Inbound: ":25", Relay: ":26", HTTP: ":8025"}
}

func (s *ListenSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	for name, addr := range map[string]string{"listen.inbound": s.Inbound, "listen.relay": s.Relay, "listen.submission": s.Submission} {
		if addr != "" {
			if err := checkListenAddr(addr); err != nil {
				errs.add(name, "%v", err)
			}
		}
	}
	if s.Submission != "" {
		errs.add("listen.submission", "the submission listener (SMTP AUTH) is not available in this version; leave it empty")
	}
	if s.HTTP == "" {
		errs.add("listen.http", "required: /metrics, /healthz and /readyz are served here")
	} else if err := checkListenAddr(s.HTTP); err != nil {
		errs.add("listen.http", "%v", err)
	}
	if s.Inbound == "" && s.Relay == "" {
		errs.add("listen", "no SMTP listener: set listen.inbound or listen.relay")
	}
	return errs
}
