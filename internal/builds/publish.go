package builds

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// publish writes the version marker m names to MarkerDir/NAME.txt and to
// the marker's publish_path, as one line, where it differs. A marker that
// names no build is not published.
func (c *Controller) publish(mc config.Marker, m *store.Marker) error {
	if m.BuildID == 0 {
		return nil
	}
	content := []byte(markerContent(m))
	var paths []string
	if c.opts.MarkerDir != "" {
		paths = append(paths, filepath.Join(c.opts.MarkerDir, mc.Name+".txt"))
	}
	if mc.PublishPath != "" {
		paths = append(paths, mc.PublishPath)
	}
	var errs []error
	for _, p := range paths {
		if err := writeIfChanged(p, content); err != nil {
			errs = append(errs, fmt.Errorf("publish marker %s: %w", mc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// markerContent is what a marker's file holds: its version, as one line.
// The leader writes it to files; every replica serves it from the store
// (GET /markers/NAME.txt).
func markerContent(m *store.Marker) string { return m.Version + "\n" }

// writeIfChanged replaces the file at path with content, unless it holds
// content already. The replacement is atomic: readers see the old file or
// the new one, never a part.
func writeIfChanged(path string, content []byte) error {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, content) {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(content)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	return nil
}
