package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
)

// maxAnswer is the most Send reads of an answer's body.
const maxAnswer = 64 << 10

// Send delivers payload as a GitHub webhook delivery of event to url, the
// way GitHub does: a POST with a fresh delivery id (a random UUID) and,
// unless secret is empty, the X-Hub-Signature-256 of the exact payload.
// client nil means http.DefaultClient.
//
// err reports a delivery that got no answer; any HTTP answer, whatever its
// status, is returned as status and body (its first 64 KiB).
func Send(ctx context.Context, client *http.Client, url string, secret []byte, event string, payload []byte) (deliveryID string, status int, body string, err error) {
	if client == nil {
		client = http.DefaultClient
	}
	deliveryID = NewDeliveryID()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return deliveryID, 0, "", fmt.Errorf("send delivery %s: %w", deliveryID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/lockstep")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderDelivery, deliveryID)
	if len(secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(secret, payload))
	}
	resp, err := client.Do(req)
	if err != nil {
		return deliveryID, 0, "", fmt.Errorf("send delivery %s: %w", deliveryID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return deliveryID, resp.StatusCode, string(b), fmt.Errorf("send delivery %s: read answer: %w", deliveryID, err)
	}
	return deliveryID, resp.StatusCode, string(b), nil
}

// NewDeliveryID returns a random (version 4) UUID, the form of GitHub's
// delivery ids.
func NewDeliveryID() string {
	var u [16]byte
	rand.Read(u[:]) // never fails (crypto/rand)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
