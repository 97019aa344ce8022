package transport

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// CacheOptions configures Cache. The zero value is ready to use.
type CacheOptions struct {
	// MaxBytes bounds the bodies and headers the cache holds; the least
	// recently used entries are dropped past it. Default 32 MiB.
	MaxBytes int64
	// MaxEntryBytes is the largest body stored; larger ones pass through
	// uncached. Default 1 MiB, and never more than MaxBytes/4.
	MaxEntryBytes int64
}

// Cache is a RoundTripper that makes GET requests conditional. It stores
// the ETag or Last-Modified and body of every 200 response to a GET, keyed
// by a SHA-256 of the URL, the Accept and X-GitHub-Api-Version headers and
// the Authorization header (so one token's view is never served to
// another, and no token is held); later GETs of the same key carry
// If-None-Match or If-Modified-Since, and a 304 answer becomes the stored
// 200 response, with a fresh body reader each time, the 304's headers
// (rate-limit headers included) laid over the stored ones, and
// X-From-Cache: 1. GitHub does not count 304 answers against the rate
// limit. It is safe for concurrent use.
//
// Requests that carry their own conditional or Range headers pass through
// untouched, as do responses marked Cache-Control: no-store.
type Cache struct {
	next          http.RoundTripper
	maxBytes      int64
	maxEntryBytes int64

	mu    sync.Mutex
	lru   *list.List               // mu guards lru: *cacheEntry, most recently used first
	index map[string]*list.Element // mu guards index: key → element of lru
	size  int64                    // mu guards size: sum of the entries' sizes
}

var _ http.RoundTripper = (*Cache)(nil)

// cacheEntry is one stored response. It is never modified once stored.
type cacheEntry struct {
	key          string
	etag         string
	lastModified string
	header       http.Header
	body         []byte
	size         int64
}

// NewCache returns a Cache in front of next.
func NewCache(next http.RoundTripper, opts CacheOptions) *Cache {
	c := &Cache{next: next, maxBytes: opts.MaxBytes, maxEntryBytes: opts.MaxEntryBytes,
		lru: list.New(), index: make(map[string]*list.Element)}
	if c.maxBytes <= 0 {
		c.maxBytes = 32 << 20
	}
	if c.maxEntryBytes <= 0 {
		c.maxEntryBytes = 1 << 20
	}
	c.maxEntryBytes = min(c.maxEntryBytes, c.maxBytes/4)
	return c
}

// Len returns the number of stored responses.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// RoundTrip sends req, conditionally when a response to it is stored.
func (c *Cache) RoundTrip(req *http.Request) (*http.Response, error) {
	if !cacheable(req) {
		return c.next.RoundTrip(req)
	}
	key := cacheKey(req)
	e := c.get(key)
	out := req
	if e != nil {
		out = req.Clone(req.Context())
		if e.etag != "" {
			out.Header.Set("If-None-Match", e.etag)
		}
		if e.lastModified != "" {
			out.Header.Set("If-Modified-Since", e.lastModified)
		}
	}
	resp, err := c.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotModified && e != nil:
		discard(resp)
		return e.response(req, resp), nil
	case resp.StatusCode == http.StatusOK:
		return c.store(key, resp), nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		c.remove(key)
	}
	return resp, nil
}

// cacheable reports whether req is a GET the cache may make conditional.
func cacheable(req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != "" {
		return false
	}
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "Range"} {
		if req.Header.Get(h) != "" {
			return false
		}
	}
	return !hasDirective(req.Header, "no-store")
}

// hasDirective reports whether h's Cache-Control lists directive.
func hasDirective(h http.Header, directive string) bool {
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), directive) {
				return true
			}
		}
	}
	return false
}

// cacheKey is a SHA-256 of everything a GitHub response varies on.
func cacheKey(req *http.Request) string {
	h := sha256.New()
	for _, s := range []string{req.URL.String(), req.Header.Get("Accept"),
		req.Header.Get("X-GitHub-Api-Version"), req.Header.Get("Authorization")} {
		_, _ = io.WriteString(h, s)
		_, _ = h.Write([]byte{0})
	}
	return string(h.Sum(nil))
}

// credentialIdentity is a short hash naming the holder of an
// Authorization header value; "" for none.
func credentialIdentity(authorization string) string {
	if authorization == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(authorization))
	return hex.EncodeToString(sum[:12])
}

// get returns the entry stored under key and marks it recently used.
func (c *Cache) get(key string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

// remove drops the entry stored under key, if any.
func (c *Cache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[key]; ok {
		c.drop(el)
	}
}

// drop removes el. c.mu must be held.
func (c *Cache) drop(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.index, e.key)
	c.size -= e.size
}

// store reads resp's body and stores it under key when resp carries a
// validator, returning resp with a body that yields the same bytes. A body
// too large to store, or one that fails to read, is handed on as it comes.
func (c *Cache) store(key string, resp *http.Response) *http.Response {
	etag, lastModified := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" && lastModified == "" || hasDirective(resp.Header, "no-store") {
		return resp
	}
	orig := resp.Body
	buf, err := io.ReadAll(io.LimitReader(orig, c.maxEntryBytes+1))
	if err != nil || int64(len(buf)) > c.maxEntryBytes {
		rest := orig
		if err != nil {
			rest = io.NopCloser(errReader{err})
		}
		resp.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(buf), rest), Closer: orig}
		return resp
	}
	_ = orig.Close()
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	resp.ContentLength = int64(len(buf))

	e := &cacheEntry{key: key, etag: etag, lastModified: lastModified, header: resp.Header.Clone(), body: buf}
	e.size = int64(len(key) + len(buf) + len(etag) + len(lastModified))
	for k, vs := range e.header {
		e.size += int64(len(k))
		for _, v := range vs {
			e.size += int64(len(v))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[key]; ok {
		c.drop(el)
	}
	c.index[key] = c.lru.PushFront(e)
	c.size += e.size
	for c.size > c.maxBytes && c.lru.Len() > 0 {
		c.drop(c.lru.Back())
	}
	return resp
}

// notModifiedSkip lists the headers of a 304 that describe its own (empty)
// body and so must not replace the stored ones.
func notModifiedSkip(k string) bool {
	switch k {
	case "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Content-Range":
		return true
	}
	return false
}

// response builds the 200 response e stands for, answering req, with the
// headers of notModified laid over the stored ones.
func (e *cacheEntry) response(req *http.Request, notModified *http.Response) *http.Response {
	h := e.header.Clone()
	for k, vs := range notModified.Header {
		if !notModifiedSkip(k) {
			h[k] = slices.Clone(vs)
		}
	}
	h.Set("X-From-Cache", "1")
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         notModified.Proto,
		ProtoMajor:    notModified.ProtoMajor,
		ProtoMinor:    notModified.ProtoMinor,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       req,
		TLS:           notModified.TLS,
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// readCloser joins a Reader and a Closer.
type readCloser struct {
	io.Reader
	io.Closer
}
