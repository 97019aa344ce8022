// Package webhook is lockstep's HTTP intake for GitHub webhooks: POST /hook
// verifies a delivery's signature, checks that its payload is what its
// event promises, hands it to a Sink that makes it durable, and answers.
// It applies no policy: what a delivery means is the trigger's business,
// after the delivery is stored (see Decode).
//
// Only the events lockstep acts on (pull_request, issue_comment, push,
// check_run, check_suite) reach the Sink. A ping is answered and a
// delivery of any other event is acknowledged, and neither is stored: they
// do not appear among the stored deliveries.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// Headers of a GitHub webhook delivery.
const (
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
	HeaderHookID    = "X-GitHub-Hook-ID"
	HeaderSignature = "X-Hub-Signature-256"
)

// DefaultMaxBody is the largest body the intake reads by default: GitHub
// caps payloads at 25 MB.
const DefaultMaxBody = 25 << 20

// knownEvents returns the events lockstep acts on.
func knownEvents() []string {
	return []string{"pull_request", "issue_comment", "push", "check_run", "check_suite"}
}

// KnownEvents returns the events lockstep acts on, the X-GitHub-Event
// values the intake stores.
func KnownEvents() []string { return knownEvents() }

// Known reports whether lockstep acts on event, an X-GitHub-Event value.
func Known(event string) bool {
	return slices.Contains(knownEvents(), event)
}

// Delivery is one webhook delivery as received.
type Delivery struct {
	// ID is the X-GitHub-Delivery header: GitHub's unique id of the
	// delivery, kept by a redelivery.
	ID string
	// Event is the X-GitHub-Event header.
	Event string
	// HookID is the X-GitHub-Hook-ID header, the id of the webhook that
	// sent the delivery; empty if absent. A repository hook and an
	// organization hook deliver the same event with different ids.
	HookID string
	// Signature is the X-Hub-Signature-256 header that was verified,
	// "sha256=" and the hex HMAC of Body, kept for audit.
	Signature string
	// ReceivedAt is when the intake received the delivery.
	ReceivedAt time.Time
	// Subject is what the delivery is about, as read by Validate.
	Subject Subject
	// Body is the exact payload. The intake never touches it after
	// handing the Delivery to a Sink.
	Body []byte
}

// Sink keeps deliveries. The intake calls Accept for each verified and
// validated delivery of an event lockstep acts on, from many goroutines at
// once, and answers GitHub only after Accept returns.
type Sink interface {
	// Accept makes d durable before returning nil: a delivery acknowledged
	// with a 2xx status must survive a crash. If a delivery with d.ID was
	// already accepted, Accept stores nothing and returns duplicate true.
	// An error makes the intake answer 503 so that the delivery is sent
	// again; nothing must have been stored then.
	Accept(ctx context.Context, d Delivery) (duplicate bool, err error)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, d Delivery) (duplicate bool, err error)

var (
	_ Sink         = SinkFunc(nil)
	_ http.Handler = (*handler)(nil)
)

// Accept calls f(ctx, d).
func (f SinkFunc) Accept(ctx context.Context, d Delivery) (bool, error) { return f(ctx, d) }

// Outcomes passed to HandlerOptions.Metrics.
const (
	OutcomeAccepted         = "accepted"              // 202, stored
	OutcomeDuplicate        = "duplicate"             // 200, already stored
	OutcomePing             = "ping"                  // 200 pong
	OutcomeIgnored          = "ignored"               // 202, an event lockstep does not act on
	OutcomeBadMethod        = "bad_method"            // 405
	OutcomeBadRequest       = "bad_request"           // 400, a missing header or an unreadable body
	OutcomeUnsupportedMedia = "unsupported_media"     // 415, neither JSON nor a form
	OutcomeUnauthorized     = "unauthorized"          // 401, a missing or wrong signature
	OutcomeTooLarge         = "too_large"             // 413
	OutcomeInvalid          = "invalid"               // 400, a payload that is not what its event promises
	OutcomeUnavailable      = "unavailable"           // 503, the Sink failed
	OutcomeNoSecret         = "secret_not_configured" // 500
)

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	// Secret returns the webhook secret. It is called for every delivery,
	// so a reloaded configuration takes effect at once. Required. While it
	// returns an empty secret (none is configured) or an error (the
	// configured one cannot be read) every delivery is refused with 500,
	// saying which.
	Secret func() ([]byte, error)
	// Sink keeps accepted deliveries. Required.
	Sink Sink
	// Clock stamps Delivery.ReceivedAt; nil means the real clock.
	Clock clock.PassiveClock
	// Logger receives one record per refused delivery (and, at debug
	// level, per accepted one); nil discards them.
	Logger *slog.Logger
	// MaxBody is the largest body read, in bytes; 0 means DefaultMaxBody.
	// A larger body is refused with 413 after reading MaxBody+1 bytes.
	MaxBody int64
	// Metrics, if set, is called once per request with the delivery's
	// event (one of the events lockstep acts on, "ping", or "other", so
	// that a client cannot create labels) and one of the Outcome values.
	Metrics func(event, outcome string)
	// Refused, if set, is called once for each refused delivery (any
	// answer but 200 and 202), on the request's goroutine, before the
	// answer: it must not block. RefusalRecorder.Record is one.
	Refused func(store.Refusal)
}

// NewHandler returns the handler of POST /hook. It panics if opts.Secret
// or opts.Sink is nil.
//
// Answers, each a text/plain body naming the delivery id:
//
//	405 a method other than POST
//	400 a missing X-GitHub-Event or X-GitHub-Delivery header
//	415 a Content-Type other than application/json or
//	    application/x-www-form-urlencoded (GitHub's default: the JSON in
//	    the payload field, the signature over the form body as sent)
//	401 a missing X-Hub-Signature-256 header, or one that does not match
//	413 a body larger than MaxBody
//	200 "pong" to a ping (not stored)
//	202 "ignored event X" to an event lockstep does not act on (not stored)
//	400 a payload Validate refuses
//	503 the Sink failed; nothing was stored, send it again
//	200 "duplicate delivery" when the Sink already had it
//	202 "accepted" once the Sink has stored it
//
// Nothing reaches the Sink unless the answer is 200 or 202.
func NewHandler(opts HandlerOptions) http.Handler {
	if opts.Secret == nil {
		panic("webhook.NewHandler: HandlerOptions.Secret is nil")
	}
	if opts.Sink == nil {
		panic("webhook.NewHandler: HandlerOptions.Sink is nil")
	}
	h := &handler{opts: opts}
	if h.opts.Clock == nil {
		h.opts.Clock = clock.RealClock{}
	}
	if h.opts.Logger == nil {
		h.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if h.opts.MaxBody <= 0 {
		h.opts.MaxBody = DefaultMaxBody
	}
	if h.opts.Metrics == nil {
		h.opts.Metrics = func(string, string) {}
	}
	return h
}

type handler struct {
	opts HandlerOptions
}

// maxPrealloc caps the buffer allocated from a Content-Length before any
// byte has been read, so that a client cannot make the intake reserve
// MaxBody per connection for free.
const maxPrealloc = 1 << 20

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(HeaderDelivery)
	event := r.Header.Get(HeaderEvent)
	a := answer{w: w, r: r, h: h, id: id, event: event}

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.refuse(http.StatusMethodNotAllowed, OutcomeBadMethod, fmt.Sprintf("method %s not allowed: send POST", r.Method))
		return
	}
	if event == "" {
		a.refuse(http.StatusBadRequest, OutcomeBadRequest, "missing "+HeaderEvent+" header")
		return
	}
	if id == "" {
		a.refuse(http.StatusBadRequest, OutcomeBadRequest, "missing "+HeaderDelivery+" header")
		return
	}
	if !validDeliveryID(id) {
		a.id = ""
		a.refuse(http.StatusBadRequest, OutcomeBadRequest, HeaderDelivery+" header is not a delivery id (1 to 128 printable ASCII characters)")
		return
	}
	form := false
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err == nil && mt == "application/json":
		case err == nil && mt == formMedia:
			form = true
		default:
			a.refuse(http.StatusUnsupportedMediaType, OutcomeUnsupportedMedia,
				fmt.Sprintf("content type %q is neither application/json nor %s: set the webhook's content type to application/json", ct, formMedia))
			return
		}
	}
	sig := r.Header.Get(HeaderSignature)
	if sig == "" {
		a.refuse(http.StatusUnauthorized, OutcomeUnauthorized, "missing "+HeaderSignature+" header: set a secret on the webhook")
		return
	}
	secret, err := h.opts.Secret()
	switch {
	case err != nil:
		a.refuse(http.StatusInternalServerError, OutcomeNoSecret, fmt.Sprintf("lockstep cannot read its webhook secret: %v", err))
		return
	case len(secret) == 0:
		a.refuse(http.StatusInternalServerError, OutcomeNoSecret, "lockstep has no webhook secret configured (github.webhook_secret_file)")
		return
	}
	if r.ContentLength > h.opts.MaxBody {
		a.refuse(http.StatusRequestEntityTooLarge, OutcomeTooLarge, fmt.Sprintf("body is larger than %d bytes", h.opts.MaxBody))
		return
	}
	body, err := readBody(w, r, h.opts.MaxBody)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			a.refuse(http.StatusRequestEntityTooLarge, OutcomeTooLarge, fmt.Sprintf("body is larger than %d bytes", h.opts.MaxBody))
			return
		}
		a.refuse(http.StatusBadRequest, OutcomeBadRequest, fmt.Sprintf("read body: %v", err))
		return
	}
	if err := Verify(secret, sig, body); err != nil {
		a.refuse(http.StatusUnauthorized, OutcomeUnauthorized, err.Error())
		return
	}
	if form {
		// GitHub signs the form body as sent; the event is the JSON of its
		// payload field, which is what lockstep keeps.
		if body, err = formPayload(body); err != nil {
			a.refuse(http.StatusBadRequest, OutcomeBadRequest, err.Error())
			return
		}
	}

	// The delivery is authentic from here on.
	if event == "ping" {
		a.reply(http.StatusOK, OutcomePing, "pong")
		return
	}
	if !Known(event) {
		a.reply(http.StatusAccepted, OutcomeIgnored, "ignored event "+event)
		return
	}
	subject, err := Validate(event, body)
	if err != nil {
		a.refuse(http.StatusBadRequest, OutcomeInvalid, err.Error())
		return
	}
	d := Delivery{
		ID:         id,
		Event:      event,
		HookID:     r.Header.Get(HeaderHookID),
		Signature:  sig,
		ReceivedAt: h.opts.Clock.Now(),
		Subject:    subject,
		Body:       body,
	}
	duplicate, err := h.opts.Sink.Accept(r.Context(), d)
	switch {
	case err != nil:
		h.opts.Logger.Error("webhook delivery not stored", "delivery", id, "event", event, "error", err)
		a.reply(http.StatusServiceUnavailable, OutcomeUnavailable, "not stored, send it again: "+err.Error())
	case duplicate:
		h.opts.Logger.Info("duplicate webhook delivery", "delivery", id, "event", event, "repo", subject.Repo)
		a.reply(http.StatusOK, OutcomeDuplicate, "duplicate delivery")
	default:
		h.opts.Logger.Debug("webhook delivery accepted", "delivery", id, "event", event, "repo", subject.Repo, "action", subject.Action)
		a.reply(http.StatusAccepted, OutcomeAccepted, "accepted "+event)
	}
}

// formMedia is the content type GitHub sends by default: the event's JSON
// in the form field payload.
const formMedia = "application/x-www-form-urlencoded"

// formPayload returns the payload field of a form-encoded delivery body.
func formPayload(body []byte) ([]byte, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("read form body: %v", err)
	}
	payload, ok := values["payload"]
	if !ok || len(payload) != 1 {
		return nil, errors.New("form body has no single payload field: GitHub puts the event's JSON there")
	}
	return []byte(payload[0]), nil
}

// readBody reads r's body, at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	size := int64(512)
	if r.ContentLength > 0 {
		// One byte more than announced, to see EOF without growing.
		size = min(r.ContentLength+1, limit+1, maxPrealloc)
	}
	body := make([]byte, 0, size)
	rd := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// validDeliveryID reports whether id can serve as a delivery id: GitHub
// sends a UUID; anything printable and short is accepted.
func validDeliveryID(id string) bool {
	if len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// answer writes the response to one request.
type answer struct {
	w     http.ResponseWriter
	r     *http.Request
	h     *handler
	id    string
	event string
}

// refuse answers a delivery that was not accepted, and logs why.
func (a *answer) refuse(status int, outcome, msg string) {
	a.h.opts.Logger.Warn("webhook delivery refused", "delivery", a.id, "event", a.event, "status", status, "reason", msg, "remote", a.r.RemoteAddr)
	if a.h.opts.Refused != nil {
		a.h.opts.Refused(store.Refusal{
			ID: a.id, Event: truncate(a.event, maxRefusalField), ReceivedAt: a.h.opts.Clock.Now(),
			Status: status, Outcome: outcome, Message: truncate(msg, maxRefusalMessage), Remote: truncate(a.r.RemoteAddr, maxRefusalField),
		})
	}
	a.reply(status, outcome, msg)
}

// Bounds of what a refusal keeps of a delivery's headers and answer: a
// client chooses them.
const (
	maxRefusalField   = 128
	maxRefusalMessage = 512
)

// truncate returns s cut to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (a *answer) reply(status int, outcome, msg string) {
	label := a.event
	if label != "ping" && !Known(label) {
		label = "other"
	}
	a.h.opts.Metrics(label, outcome)
	h := a.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	a.w.WriteHeader(status)
	if a.id != "" {
		fmt.Fprintf(a.w, "delivery %s: %s\n", a.id, msg)
	} else {
		fmt.Fprintln(a.w, msg)
	}
}
