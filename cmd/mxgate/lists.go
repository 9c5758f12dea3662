package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/lists"
)

// openLists is the node's lists store: replicated in a cluster, else a file
// in the data dir.
func openLists(cfg *Config, cl *cluster.Cluster) (lists.Store, error) {
	if cl != nil {
		return cluster.NewListsStore(cl.Node()), nil
	}
	s, err := lists.OpenFileStore(filepath.Join(cfg.Node.DataDir, "lists.json"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// listsRequest is the body of POST /api/v1/lists.
type listsRequest struct {
	List    string `json:"list"`
	Value   string `json:"value"`
	Comment string `json:"comment"`
}

// registerListsAPI serves the lists: GET /api/v1/lists, POST /api/v1/lists
// (an entry), DELETE /api/v1/lists?list=block&value=V. All need the admin
// token: the lists are the operator's.
func registerListsAPI(m *gateway.AdminMux, store lists.Store, logger *slog.Logger) {
	m.HandleAPI("GET /api/v1/lists", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		es, err := store.Entries(r.Context())
		if err != nil {
			gateway.WriteJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
			return
		}
		if es == nil {
			es = []lists.Entry{}
		}
		gateway.WriteJSON(w, http.StatusOK, map[string]any{"entries": es})
	}), gateway.AdminOnly("reading the lists"))
	m.HandleAPI("POST /api/v1/lists", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req listsRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
			return
		}
		l, err := lists.ParseList(req.List)
		var e lists.Entry
		if err == nil {
			e, err = lists.NewEntry(l, req.Value, req.Comment, time.Now())
		}
		if err != nil {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if err := store.Put(ctx, e); err != nil {
			status := http.StatusServiceUnavailable
			if errors.Is(err, lists.ErrInvalid) || errors.Is(err, cluster.ErrInvalidCommand) {
				status = http.StatusBadRequest
			}
			gateway.WriteJSON(w, status, apiError{Error: err.Error()})
			return
		}
		logger.Info("list entry added", "event", "admin", "list", string(e.List), "kind", string(e.Kind), "value", e.Value, "remote", r.RemoteAddr)
		gateway.WriteJSON(w, http.StatusOK, e)
	}), gateway.AdminOnly("changing the lists"))
	m.HandleAPI("DELETE /api/v1/lists", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := lists.ParseList(r.URL.Query().Get("list"))
		if err != nil {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		value := r.URL.Query().Get("value")
		removed, err := store.Delete(ctx, l, value)
		switch {
		case errors.Is(err, lists.ErrInvalid):
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		case err != nil:
			gateway.WriteJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		case !removed:
			gateway.WriteJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("%q is not on the %s list", value, l)})
		default:
			logger.Info("list entry removed", "event", "admin", "list", string(l), "value", value, "remote", r.RemoteAddr)
			gateway.WriteJSON(w, http.StatusOK, map[string]bool{"removed": true})
		}
	}), gateway.AdminOnly("changing the lists"))
}

const listsUsage = `Usage:
  mxgate lists ls  [-config FILE | -http URL]                        every entry
  mxgate lists add [-config FILE | -http URL] [-comment C] LIST VALUE  add to allow or block
  mxgate lists rm  [-config FILE | -http URL] LIST VALUE             remove
VALUE is a client address or network (192.0.2.0/24), a sender address
(user@example.com) or a sender domain and its subdomains (example.com).
A block entry refuses mail with 554 5.7.1; an allow entry skips spam scoring.
`

func cmdLists(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, listsUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	want := map[string]int{"ls": 0, "add": 2, "rm": 2}
	if sub == "help" || sub == "-h" || sub == "--help" {
		fmt.Fprint(stdout, listsUsage)
		return 0
	}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "mxgate lists: unknown command %q\n\n%s", sub, listsUsage)
		return 2
	}
	fs := flag.NewFlagSet("lists "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := apiFlags(fs)
	comment := fs.String("comment", "", "why the entry is there (add)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if fs.NArg() != n {
		fmt.Fprint(stderr, listsUsage)
		return 2
	}
	api, err := target.client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch sub {
	case "ls":
		var resp struct {
			Entries []lists.Entry `json:"entries"`
		}
		if err = api.do(http.MethodGet, "/api/v1/lists", &resp); err == nil {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LIST\tKIND\tVALUE\tADDED\tCOMMENT")
			for _, e := range resp.Entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.List, e.Kind, e.Value, e.Added.Format(time.RFC3339), e.Comment)
			}
			err = tw.Flush()
		}
	case "add":
		body, _ := json.Marshal(listsRequest{List: fs.Arg(0), Value: fs.Arg(1), Comment: *comment})
		var e lists.Entry
		if err = api.doBody(http.MethodPost, "/api/v1/lists", body, &e); err == nil {
			fmt.Fprintf(stdout, "added %s to the %s list\n", e.Value, e.List)
		}
	case "rm":
		q := url.Values{"list": {fs.Arg(0)}, "value": {fs.Arg(1)}}
		if err = api.do(http.MethodDelete, "/api/v1/lists?"+q.Encode(), nil); err == nil {
			fmt.Fprintf(stdout, "removed %s from the %s list\n", fs.Arg(1), strings.ToLower(fs.Arg(0)))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mxgate lists %s: %v\n", sub, err)
		return 1
	}
	return 0
}
