// Package userpage is the quarantine's side for the people mail is
// addressed to: links signed with the cluster's link key (HMAC-SHA256,
// bound to a recipient, an action and optionally one entry, expiring), and
// the page those links open on a node's HTTP listener, where a recipient
// sees their held mail (a plain-text preview, never the message's HTML)
// and releases or deletes it with a POST. The signed token is the
// credential: no admin token, no login.
package userpage

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/quarantine"
)

// PagePath is where the page is served.
const PagePath = "/quarantine"

// CSP is the page's Content-Security-Policy: nothing is loaded from
// anywhere (no scripts, images, fonts or frames), only the page's own
// inline style applies, and forms post to this node only.
const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var errNoAllow = errors.New("no allow list, or the null sender")

// actionLifetime bounds the tokens of the page's buttons.
const actionLifetime = 24 * time.Hour

// maxListed is the most entries the page shows.
const maxListed = 200

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// Handler serves the page.
type Handler struct {
	Store  quarantine.Store
	Signer *Signer
	// Release releases an entry (quarantine.Releaser.Release), exactly
	// once cluster-wide.
	Release func(ctx context.Context, id, by string) (quarantine.Entry, error)
	// Allow puts sender (an address) on the allow list, with comment;
	// nil: the page has no allow button. The allow list is the
	// gateway's, for every recipient (README, "Quarantine").
	Allow  func(ctx context.Context, sender, comment string) error
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
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

// Register serves the page on m as gateway.SignedUser routes: every
// handler checks its token before anything else.
func (h *Handler) Register(m *gateway.AdminMux) {
	m.HandleAPI("GET "+PagePath, http.HandlerFunc(h.serveList), gateway.SignedUser)
	m.HandleAPI("GET "+PagePath+"/{id}", http.HandlerFunc(h.serveEntry), gateway.SignedUser)
	m.HandleAPI("POST "+PagePath+"/{id}/release", h.action(ActionRelease), gateway.SignedUser)
	m.HandleAPI("POST "+PagePath+"/{id}/delete", h.action(ActionDelete), gateway.SignedUser)
	m.HandleAPI("POST "+PagePath+"/{id}/allow", h.action(ActionAllow), gateway.SignedUser)
}

// ServeHTTP serves the page's routes alone (tests).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PagePath, h.serveList)
	mux.HandleFunc("GET "+PagePath+"/{id}", h.serveEntry)
	mux.Handle("POST "+PagePath+"/{id}/release", h.action(ActionRelease))
	mux.Handle("POST "+PagePath+"/{id}/delete", h.action(ActionDelete))
	mux.Handle("POST "+PagePath+"/{id}/allow", h.action(ActionAllow))
	mux.ServeHTTP(w, r)
}

type pageData struct {
	Recipient string
	Notice    string
	Error     string
	Entries   []entryView
	More      bool
	Entry     *entryView
	Preview   *quarantine.Preview
	ListLink  string
}

type entryView struct {
	ID, Sender, Subject, Date, Reason, State string
	Score                                    string
	ViewLink                                 string
	ReleaseAction, ReleaseToken              string
	DeleteAction, DeleteToken                string
	AllowAction, AllowToken                  string
}

func (h *Handler) view(e *quarantine.Entry, rcpt string, exp time.Time, viewToken string) entryView {
	v := entryView{ID: e.ID, Sender: e.Sender, Subject: e.Subject, Date: e.Time.Local().Format("2006-01-02 15:04 MST"),
		Reason: string(e.Reason), State: string(e.State), Score: fmt.Sprintf("%.1f", e.Score)}
	if v.Sender == "" {
		v.Sender = "<>"
	}
	v.ViewLink = PagePath + "/" + e.ID + "?t=" + viewToken
	if e.State == quarantine.StateHeld {
		if t := h.now().Add(actionLifetime); t.Before(exp) {
			exp = t
		}
		v.ReleaseAction, v.DeleteAction = PagePath+"/"+e.ID+"/release", PagePath+"/"+e.ID+"/delete"
		v.ReleaseToken, _ = h.Signer.Sign(Claims{Recipient: rcpt, Action: ActionRelease, ID: e.ID, Expires: exp})
		v.DeleteToken, _ = h.Signer.Sign(Claims{Recipient: rcpt, Action: ActionDelete, ID: e.ID, Expires: exp})
		if h.Allow != nil && e.Sender != "" {
			v.AllowAction = PagePath + "/" + e.ID + "/allow"
			v.AllowToken, _ = h.Signer.Sign(Claims{Recipient: rcpt, Action: ActionAllow, ID: e.ID, Expires: exp})
		}
	}
	return v
}

// render writes the page with its security headers.
func render(w http.ResponseWriter, status int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer") // the URL holds the token
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

// refuse answers 403 for a token that does not grant the request.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	h.log().Info("quarantine link refused", "event", "quarantine_user", "path", r.URL.Path, "error", err.Error())
	msg := "This link is not valid."
	if errors.Is(err, ErrExpired) {
		msg = "This link has expired. The next quarantine report has fresh links."
	}
	render(w, http.StatusForbidden, pageData{Error: msg})
}

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("t")
	c, err := h.Signer.Verify(tok, ActionView, "", h.now())
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	p, err := h.Store.List(r.Context(), quarantine.Filter{Recipient: c.Recipient, State: quarantine.StateHeld, Limit: maxListed})
	if err != nil {
		h.log().Warn("quarantine page: listing failed", "event", "quarantine_user", "error", err.Error())
		render(w, http.StatusServiceUnavailable, pageData{Recipient: c.Recipient, Error: "The quarantine cannot be read now; try again later."})
		return
	}
	d := pageData{Recipient: c.Recipient, More: p.Next != "", Entries: []entryView{}}
	for i := range p.Entries {
		e := &p.Entries[i]
		if HasRecipient(e, c.Recipient) { // the filter's own check, again
			d.Entries = append(d.Entries, h.view(e, c.Recipient, c.Expires, tok))
		}
	}
	render(w, http.StatusOK, d)
}

// entryFor reads entry id and checks it is addressed to rcpt; it answers
// the request itself when not (404 for both: no probing of ids).
func (h *Handler) entryFor(w http.ResponseWriter, r *http.Request, id, rcpt string) (quarantine.Entry, bool) {
	e, err := h.Store.Get(r.Context(), id)
	switch {
	case err == nil && HasRecipient(&e, rcpt):
		return e, true
	case err == nil, errors.Is(err, quarantine.ErrNotFound):
		if err == nil {
			h.log().Warn("quarantine link for another recipient's message", "event", "quarantine_user", "quarantine_id", id, "recipient", rcpt)
		}
		render(w, http.StatusNotFound, pageData{Recipient: rcpt, Error: "No such message in your quarantine (it may have expired)."})
	default:
		render(w, http.StatusServiceUnavailable, pageData{Recipient: rcpt, Error: "The quarantine cannot be read now; try again later."})
	}
	return quarantine.Entry{}, false
}

func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request) {
	id, tok := r.PathValue("id"), r.URL.Query().Get("t")
	c, err := h.Signer.Verify(tok, ActionView, id, h.now())
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	e, ok := h.entryFor(w, r, id, c.Recipient)
	if !ok {
		return
	}
	v := h.view(&e, c.Recipient, c.Expires, tok)
	d := pageData{Recipient: c.Recipient, Entry: &v}
	if e.State == quarantine.StateHeld && e.Stored > 0 {
		if body, err := h.Store.Body(r.Context(), e.ID); err == nil {
			p := quarantine.MakePreview(body)
			body.Close()
			d.Preview = &p
		}
	}
	if lt, err := h.Signer.Sign(Claims{Recipient: c.Recipient, Action: ActionView, Expires: c.Expires}); err == nil {
		d.ListLink = PagePath + "?t=" + lt
	}
	render(w, http.StatusOK, d)
}

// action serves the buttons' POSTs: the form's token must grant this
// action on this entry, and the entry must be addressed to the token's
// recipient.
func (h *Handler) action(a Action) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		id := r.PathValue("id")
		c, err := h.Signer.Verify(r.PostFormValue("t"), a, id, h.now())
		if err != nil {
			h.refuse(w, r, err)
			return
		}
		e, ok := h.entryFor(w, r, id, c.Recipient)
		if !ok {
			return
		}
		by := quarantine.CleanBy(c.Recipient + " (quarantine page)")
		var notice string
		switch a {
		case ActionRelease:
			_, err = h.Release(r.Context(), id, by)
			notice = "Released: the message is on its way to your mailbox."
		case ActionAllow:
			notice = "The sender " + e.Sender + " is allowed from now on, and the message is on its way to your mailbox."
			switch {
			case h.Allow == nil || e.Sender == "":
				err = errNoAllow
			case e.State != quarantine.StateHeld:
				err = quarantine.ErrReleased // nothing allowed for a message already handled
			default:
				// The sender first: a failed release leaves it allowed, and
				// the button can be pressed again (or Release used).
				if err = h.Allow(r.Context(), e.Sender, "allowed from quarantine "+e.ID+" by "+by); err == nil {
					h.log().Info("sender allowed from the quarantine", "event", "quarantine_allow", "sender", e.Sender, "quarantine_id", e.ID, "by", by)
					_, err = h.Release(r.Context(), id, by)
				}
			}
		case ActionDelete:
			if e, err = h.Store.Delete(r.Context(), id, by, h.now()); err == nil {
				quarantine.ObserveDelete()
				h.log().Info("quarantined message deleted", "event", "quarantine_delete", "quarantine_id", e.ID, "by", by)
			}
			notice = "Deleted."
		}
		d := pageData{Recipient: c.Recipient}
		if lt, serr := h.Signer.Sign(Claims{Recipient: c.Recipient, Action: ActionView, Expires: c.Expires}); serr == nil {
			d.ListLink = PagePath + "?t=" + lt
		}
		status := http.StatusOK
		switch {
		case err == nil:
			d.Notice = notice
		case errors.Is(err, errNoAllow):
			status, d.Error = http.StatusBadRequest, "This sender cannot be allowed here."
		case errors.Is(err, quarantine.ErrReleased), errors.Is(err, quarantine.ErrDeleted), errors.Is(err, quarantine.ErrClaimed):
			status, d.Error = http.StatusConflict, "This message was already released or deleted."
		default:
			h.log().Warn("quarantine page action failed", "event", "quarantine_user", "action", string(a), "quarantine_id", id, "error", err.Error())
			status, d.Error = http.StatusServiceUnavailable, "That did not work now; try again later."
		}
		// Entry is nil: the page shows the notice and the link back.
		render(w, status, d)
	})
}
