// Package adminpage is the quarantine's page for administrators: every
// entry, with filters (recipient, sender, reason, state) and paging, and
// release, delete and allow-sender buttons. It is server-rendered
// (html/template, embedded), needs no JavaScript and sends a strict CSP.
//
// Login: POST /admin/login with the admin token (compared in constant
// time), or, with no token configured, from loopback only, as the admin
// API. A login opens a session kept in this node's memory: a random id in
// an HttpOnly, SameSite=Strict cookie (Secure over TLS), for 12 hours.
// Every state-changing request is a POST carrying the session's CSRF
// token in a hidden field, checked in constant time.
package adminpage

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/quarantine"
)

// Paths of the page.
const (
	LoginPath = "/admin/login"
	PagePath  = "/admin/quarantine"
)

// CSP is the page's Content-Security-Policy, as the user page's.
const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// SessionLifetime is how long a login lasts; MaxSessions bounds the
// sessions a node keeps (the oldest goes first).
const (
	SessionLifetime = 12 * time.Hour
	MaxSessions     = 1000
	cookieName      = "mxgate_admin"
	pageSize        = 50
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// Handler serves the admin page.
type Handler struct {
	Store quarantine.Store
	// Release releases an entry exactly once cluster-wide.
	Release func(ctx context.Context, id, by string) (quarantine.Entry, error)
	// Allow puts sender on the allow list; nil: no allow button.
	Allow func(ctx context.Context, sender, comment string) error
	// Login checks a login form's token (gateway.AdminMux.AdminLogin).
	Login func(r *http.Request, token string) bool
	// LoopbackOnly: no admin token is configured, every request must
	// come from loopback.
	LoopbackOnly bool
	Logger       *slog.Logger
	Now          func() time.Time

	mu       sync.Mutex
	sessions map[string]session
}

type session struct {
	csrf    string
	expires time.Time
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// Register serves the page on m. The routes are gateway.SignedUser: the
// handlers check the session (and, for POSTs, its CSRF token) themselves.
func (h *Handler) Register(m *gateway.AdminMux) {
	for pattern, f := range h.routes() {
		m.HandleAPI(pattern, f, gateway.SignedUser)
	}
}

// ServeHTTP serves the page's routes alone (tests).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := http.NewServeMux()
	for pattern, f := range h.routes() {
		mux.Handle(pattern, f)
	}
	mux.ServeHTTP(w, r)
}

func (h *Handler) routes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET " + LoginPath:                   http.HandlerFunc(h.serveLogin),
		"POST " + LoginPath:                  http.HandlerFunc(h.login),
		"POST /admin/logout":                 h.guard(h.logout),
		"GET " + PagePath:                    h.guard(h.serveList),
		"POST " + PagePath + "/{id}/release": h.guard(h.action("release")),
		"POST " + PagePath + "/{id}/delete":  h.guard(h.action("delete")),
		"POST " + PagePath + "/{id}/allow":   h.guard(h.action("allow")),
	}
}

type pageData struct {
	Login   bool
	CSRF    string
	Notice  string
	Error   string
	Filter  url.Values
	Entries []entryView
	Next    string
	Back    string
	Reasons []string
	States  []string
}

type entryView struct {
	ID, Sender, Recipients, Subject, Date, Reason, State, Score, By string
	Held, CanAllow                                                  bool
}

func render(w http.ResponseWriter, status int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the request's live session.
func (h *Handler) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[c.Value]
	if !ok {
		return session{}, false
	}
	if !h.now().Before(s.expires) {
		delete(h.sessions, c.Value)
		return session{}, false
	}
	return s, true
}

func (h *Handler) newSession() (string, session) {
	id, s := randomToken(), session{csrf: randomToken(), expires: h.now().Add(SessionLifetime)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions == nil {
		h.sessions = map[string]session{}
	}
	now := h.now()
	for k, v := range h.sessions {
		if !now.Before(v.expires) {
			delete(h.sessions, k)
		}
	}
	for len(h.sessions) >= MaxSessions {
		var oldest string
		for k, v := range h.sessions {
			if oldest == "" || v.expires.Before(h.sessions[oldest].expires) {
				oldest = k
			}
		}
		delete(h.sessions, oldest)
	}
	h.sessions[id] = s
	return id, s
}

// loopbackRefused answers 403 when no token is configured and r is not
// from loopback.
func (h *Handler) loopbackRefused(w http.ResponseWriter, r *http.Request) bool {
	if h.LoopbackOnly && !gateway.IsLoopback(r) {
		render(w, http.StatusForbidden, pageData{Error: "The admin page needs the admin token (admin.token_file), or a request from loopback when none is configured."})
		return true
	}
	return false
}

// guard lets through requests with a live session, and POSTs only with
// the session's CSRF token; without a session, a GET goes to the login
// form and a POST gets 403.
func (h *Handler) guard(next func(http.ResponseWriter, *http.Request, session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.loopbackRefused(w, r) {
			return
		}
		s, ok := h.session(r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
			if !ok || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				h.log().Warn("admin page: POST without a session or its CSRF token", "event", "admin_page", "path", r.URL.Path, "session", ok)
				render(w, http.StatusForbidden, pageData{Error: "Refused: log in again and retry from the page."})
				return
			}
		} else if !ok {
			http.Redirect(w, r, LoginPath, http.StatusSeeOther)
			return
		}
		next(w, r, s)
	})
}

func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	if h.loopbackRefused(w, r) {
		return
	}
	render(w, http.StatusOK, pageData{Login: true})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.loopbackRefused(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if h.Login == nil || !h.Login(r, r.PostFormValue("token")) {
		h.log().Warn("admin page: login refused", "event", "admin_page", "remote", r.RemoteAddr)
		time.Sleep(500 * time.Millisecond) // slows guessing down
		render(w, http.StatusForbidden, pageData{Login: true, Error: "Wrong token."})
		return
	}
	id, _ := h.newSession()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/admin", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(SessionLifetime / time.Second)})
	h.log().Info("admin page: login", "event", "admin_page", "remote", r.RemoteAddr)
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, _ session) {
	if c, err := r.Cookie(cookieName); err == nil {
		h.mu.Lock()
		delete(h.sessions, c.Value)
		h.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/admin", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, LoginPath, http.StatusSeeOther)
}

func (h *Handler) base(s session) pageData {
	return pageData{CSRF: s.csrf, Back: PagePath,
		Reasons: []string{string(quarantine.ReasonSpam), string(quarantine.ReasonVirus), string(quarantine.ReasonRejected)},
		States:  []string{string(quarantine.StateHeld), string(quarantine.StateClaimed), string(quarantine.StateReleased), string(quarantine.StateDeleted)}}
}

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	d := h.base(s)
	d.Back = ""
	d.Filter = url.Values{}
	for _, k := range []string{"recipient", "sender", "reason", "state"} {
		if v := q.Get(k); v != "" {
			d.Filter.Set(k, v)
		}
	}
	f := quarantine.Filter{Recipient: q.Get("recipient"), Sender: q.Get("sender"), Before: q.Get("before"), Limit: pageSize}
	var err error
	if f.Reason, err = quarantine.ParseReason(q.Get("reason")); err == nil {
		f.State, err = quarantine.ParseState(q.Get("state"))
	}
	if err != nil {
		d.Error = err.Error()
		render(w, http.StatusBadRequest, d)
		return
	}
	p, err := h.Store.List(r.Context(), f)
	if err != nil {
		h.log().Warn("admin page: listing failed", "event", "admin_page", "error", err.Error())
		d.Error = "The quarantine cannot be read now; try again later."
		render(w, http.StatusServiceUnavailable, d)
		return
	}
	for i := range p.Entries {
		e := &p.Entries[i]
		v := entryView{ID: e.ID, Sender: e.Sender, Subject: e.Subject, Date: e.Time.Local().Format("2006-01-02 15:04 MST"),
			Reason: string(e.Reason), State: string(e.State), Score: fmt.Sprintf("%.1f", e.Score), By: e.By,
			Held: e.State == quarantine.StateHeld}
		v.CanAllow = v.Held && h.Allow != nil && e.Sender != ""
		if v.Sender == "" {
			v.Sender = "<>"
		}
		for j, rc := range e.Recipients {
			if j > 0 {
				v.Recipients += ", "
			}
			v.Recipients += rc
		}
		d.Entries = append(d.Entries, v)
	}
	if p.Next != "" {
		nq := url.Values{}
		for k, v := range d.Filter {
			nq[k] = v
		}
		nq.Set("before", p.Next)
		d.Next = PagePath + "?" + nq.Encode()
	}
	render(w, http.StatusOK, d)
}

var errNoAllow = errors.New("no allow list, or the null sender")

func (h *Handler) action(a string) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, s session) {
		id := r.PathValue("id")
		by := quarantine.CleanBy("admin page (" + r.RemoteAddr + ")")
		d := h.base(s)
		var err error
		switch a {
		case "release":
			_, err = h.Release(r.Context(), id, by)
			d.Notice = "Released " + id + "."
		case "delete":
			if _, err = h.Store.Delete(r.Context(), id, by, h.now()); err == nil {
				quarantine.ObserveDelete()
				h.log().Info("quarantined message deleted", "event", "quarantine_delete", "quarantine_id", id, "by", by)
			}
			d.Notice = "Deleted " + id + "."
		case "allow":
			var e quarantine.Entry
			if e, err = h.Store.Get(r.Context(), id); err != nil {
				break
			}
			switch {
			case h.Allow == nil || e.Sender == "":
				err = errNoAllow
			case e.State != quarantine.StateHeld:
				err = quarantine.ErrReleased
			default:
				if err = h.Allow(r.Context(), e.Sender, "allowed from quarantine "+e.ID+" by "+by); err == nil {
					h.log().Info("sender allowed from the quarantine", "event", "quarantine_allow", "sender", e.Sender, "quarantine_id", e.ID, "by", by)
					_, err = h.Release(r.Context(), id, by)
				}
			}
			d.Notice = "Allowed " + e.Sender + " and released " + id + "."
		}
		status := http.StatusOK
		switch {
		case err == nil:
		case errors.Is(err, quarantine.ErrNotFound):
			status, d.Notice, d.Error = http.StatusNotFound, "", "No such message (it may have expired)."
		case errors.Is(err, errNoAllow):
			status, d.Notice, d.Error = http.StatusBadRequest, "", "This sender cannot be allowed."
		case errors.Is(err, quarantine.ErrReleased), errors.Is(err, quarantine.ErrDeleted), errors.Is(err, quarantine.ErrClaimed):
			status, d.Notice, d.Error = http.StatusConflict, "", "This message was already released or deleted."
		default:
			h.log().Warn("admin page action failed", "event", "admin_page", "action", a, "quarantine_id", id, "error", err.Error())
			status, d.Notice, d.Error = http.StatusServiceUnavailable, "", "That did not work now; try again later."
		}
		render(w, status, d)
	}
}
