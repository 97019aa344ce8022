package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const testKey = `-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu
-----END RSA PRIVATE KEY-----
`

// TestLoadChecksFiles: a file the configuration names that is missing,
// empty, a directory or not a key is a problem Load reports with the
// field's path and line, all at once, instead of a refused webhook later.
func TestLoadChecksFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		files map[string]string // created beside the configuration
		want  []string          // one line per problem, in order
	}{
		{
			name:  "all present",
			yaml:  "github:\n  token_file: token\n  webhook_secret_file: secrets/hook\n",
			files: map[string]string{"token": "t0ken\n", "secrets/hook": "s3cret\n"},
		},
		{
			name: "missing secret",
			yaml: "github:\n  webhook_secret_file: hook-secret\n",
			want: []string{`:2:3: github.webhook_secret_file: file DIR/hook-secret does not exist (relative paths are read from the configuration file's directory, DIR)`},
		},
		{
			name:  "every file wrong at once",
			yaml:  "github:\n  token_file: token\n  webhook_secret_file: dir\nrepos:\n  acme/widget: {presubmits: [{name: unit}]}\n",
			files: map[string]string{"token": " \n", "dir/x": ""},
			want: []string{
				`:2:3: github.token_file: file DIR/token is empty (relative paths are read from the configuration file's directory, DIR)`,
				`:3:3: github.webhook_secret_file: DIR/dir is a directory, not a file (relative paths are read from the configuration file's directory, DIR)`,
				`:5:30: repos["acme/widget"].presubmits[0].run: required`,
			},
		},
		{
			name:  "app key that is not PEM",
			yaml:  "github:\n  app_id: 7\n  private_key_file: app.pem\n",
			files: map[string]string{"app.pem": "not a key\n"},
			want:  []string{`:3:3: github.private_key_file: file DIR/app.pem holds no PEM-encoded private key (the .pem file GitHub gives for the App) (relative paths are read from the configuration file's directory, DIR)`},
		},
		{
			name:  "app key",
			yaml:  "github:\n  app_id: 7\n  private_key_file: app.pem\n",
			files: map[string]string{"app.pem": testKey},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "lockstep.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			var got []string
			for _, p := range Problems(err) {
				got = append(got, strings.ReplaceAll(strings.TrimPrefix(p.Error(), path), dir, "DIR"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err == nil && c.GitHub.WebhookSecretFile != "" && !filepath.IsAbs(c.GitHub.WebhookSecretFile) {
				t.Errorf("webhook_secret_file %q is not resolved", c.GitHub.WebhookSecretFile)
			}
		})
	}
}

// TestFilesListsEveryFileField: every field whose YAML name ends in _file
// is in Config.files, so Load resolves and checks it.
func TestFilesListsEveryFileField(t *testing.T) {
	t.Parallel()
	var found []string
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				walk(f.Type, path)
				continue
			}
			if strings.HasSuffix(name, "_file") {
				found = append(found, fieldPath(path, name))
			}
			walk(f.Type, fieldPath(path, name))
		}
	}
	walk(reflect.TypeFor[Config](), "")
	var listed []string
	for _, f := range Default().files() {
		listed = append(listed, f.path)
	}
	for _, f := range found {
		if !slices.Contains(listed, f) {
			t.Errorf("field %s is not in Config.files: Load neither resolves nor checks it", f)
		}
	}
	if len(found) != len(listed) {
		t.Errorf("found %d *_file fields %v, files lists %d %v", len(found), found, len(listed), listed)
	}
}
