package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

const signaturePrefix = "sha256="

// Sign returns the X-Hub-Signature-256 value of body under secret:
// "sha256=" and the hex HMAC-SHA256 of the exact bytes.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify checks signature, an X-Hub-Signature-256 value, against body and
// secret, in constant time. Its error is fit for the sender's eyes.
func Verify(secret []byte, signature string, body []byte) error {
	hexSum, ok := strings.CutPrefix(signature, signaturePrefix)
	var got [sha256.Size]byte
	if !ok || len(hexSum) != hex.EncodedLen(sha256.Size) {
		return errors.New("signature does not match: " + HeaderSignature + " must be sha256= followed by 64 hex digits")
	}
	if _, err := hex.Decode(got[:], []byte(hexSum)); err != nil {
		return errors.New("signature does not match: " + HeaderSignature + " must be sha256= followed by 64 hex digits")
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), got[:]) {
		return errors.New("signature does not match the body: check that the webhook's secret is lockstep's")
	}
	return nil
}
