package redact

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func TestWriterMasks(t *testing.T) {
	t.Parallel()
	secrets := []string{"ghp_s3cr3t", "hook-secret", "lst_ADMIN"}
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"whole", []string{"token=ghp_s3cr3t\n"}, "token=***\n"},
		{"split in two", []string{"token=ghp_s", "3cr3t\n"}, "token=***\n"},
		{"split byte by byte", strings.Split("a hook-secret b", ""), "a *** b"},
		{"two secrets, one write", []string{"ghp_s3cr3t lst_ADMIN"}, "*** ***"},
		{"adjacent", []string{"ghp_s3cr3tlst_ADMIN"}, "******"},
		{"prefix that is not a secret", []string{"ghp_s3cr", "e\n"}, "ghp_s3cre\n"},
		{"prefix left at the end", []string{"ends with hook-"}, "ends with hook-"},
		{"overlapping start", []string{"hhook-secret"}, "h***"},
		{"nothing secret", []string{"hello\n", "world\n"}, "hello\nworld\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			w := NewWriter(&b, secrets)
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v, want %d, nil", s, n, err, len(s))
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWriterHoldsOnlyPrefixes checks that a write is passed on at once,
// but for a tail that may start a secret: a live log shows every line as
// soon as it is written.
func TestWriterHoldsOnlyPrefixes(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := NewWriter(&b, []string{"s3cr3t-value"})
	_, _ = w.Write([]byte("line one\nline two s3cr"))
	if got, want := b.String(), "line one\nline two "; got != want {
		t.Errorf("after the first write: got %q, want %q", got, want)
	}
	_, _ = w.Write([]byte("3t-value done\n"))
	if got, want := b.String(), "line one\nline two *** done\n"; got != want {
		t.Errorf("after the second write: got %q, want %q", got, want)
	}
}

// TestWriterAnySplit writes random text sprinkled with secrets in random
// pieces: the output never depends on where the writes were cut.
func TestWriterAnySplit(t *testing.T) {
	t.Parallel()
	secrets := []string{"abcabd", "abc", "xyzzy-secret", "zz"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "abcdxyz- \n"
	for i := range 500 {
		var text strings.Builder
		for range rng.IntN(80) {
			if rng.IntN(6) == 0 {
				text.WriteString(secrets[rng.IntN(len(secrets))])
			} else {
				text.WriteByte(alphabet[rng.IntN(len(alphabet))])
			}
		}
		s := text.String()
		want := String(s, secrets)
		for _, sec := range secrets {
			if strings.Contains(want, sec) {
				t.Fatalf("case %d: String(%q) = %q still holds %q", i, s, want, sec)
			}
		}
		var b bytes.Buffer
		w := NewWriter(&b, secrets)
		for rest := s; rest != ""; {
			n := 1 + rng.IntN(len(rest))
			_, _ = w.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		_ = w.Close()
		if b.String() != want {
			t.Fatalf("case %d: %q written in pieces gave %q, want %q", i, s, b.String(), want)
		}
	}
}

func TestSecretsMultiLine(t *testing.T) {
	t.Parallel()
	key := "-----BEGIN KEY-----\nMIIEowIBAAKCAQEA\nshort\n-----END KEY-----\n"
	got := String("line: MIIEowIBAAKCAQEA and short\n", []string{key, ""})
	if want := "line: *** and short\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := NewWriter(&b, []string{"SECRET"})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 50 {
				_, _ = fmt.Fprintf(w, "%d.%d SECRET\n", i, j)
			}
		})
	}
	wg.Wait()
	_ = w.Close()
	if strings.Contains(b.String(), "SECRET") || strings.Count(b.String(), "***\n") != 1000 {
		t.Errorf("concurrent writes: %d masked lines, want 1000, and no secret", strings.Count(b.String(), "***\n"))
	}
}
