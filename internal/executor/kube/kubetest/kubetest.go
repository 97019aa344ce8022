// Package kubetest starts lockstep's Kubernetes test bed for a test
// binary: etcd, kube-apiserver and kwok, built by scripts/kube-testbed and
// found through KUBEBUILDER_ASSETS (the directory holding etcd and
// kube-apiserver, and kwok unless LOCKSTEP_KWOK names it). Everything listens
// on loopback, in a temporary directory, and is stopped by Stop.
//
// kwok plays one node, NodeName, and moves Pods through their phases by
// the KWOK_OUTCOME variable of their containers (see stages.yaml). It
// also serves the node's kubelet API, through which kube-apiserver
// answers pods/log with ContainerLog for every container.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// The environment variables the test bed is found through.
const (
	EnvAssets = "KUBEBUILDER_ASSETS"
	EnvKwok   = "LOCKSTEP_KWOK"
)

// NodeName is the kwok node Pods are put on (set spec.nodeName: there is
// no scheduler).
const NodeName = "kwok-node-0"

// Tokens of the test bed's users: Admin is in system:masters; Lockstep
// has only what RBAC grants it (user "lockstep").
const (
	AdminToken    = "lockstep-test-admin-token"
	LockstepToken = "lockstep-test-lockstep-token"
	LockstepUser  = "lockstep"
)

//go:embed stages.yaml
var stages []byte

// Bed is a running test bed.
type Bed struct {
	// Host is the API server's URL.
	Host  string
	Dir   string
	procs []*exec.Cmd
	kwok  *exec.Cmd
	logs  io.Writer
}

// Start starts the test bed in a new temporary directory, writing the
// processes' output to logs. It fails when the environment variables are
// not set: run eval "$(scripts/kube-testbed env)" first.
func Start(logs io.Writer) (*Bed, error) {
	assets, kwok := os.Getenv(EnvAssets), os.Getenv(EnvKwok)
	if assets == "" {
		return nil, fmt.Errorf("%s is not set: run eval \"$(scripts/kube-testbed env)\" before go test", EnvAssets)
	}
	if kwok == "" {
		kwok = filepath.Join(assets, "kwok")
	}
	for _, bin := range []string{filepath.Join(assets, "etcd"), filepath.Join(assets, "kube-apiserver"), kwok} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("test bed binary: %w (run scripts/kube-testbed build)", err)
		}
	}
	dir, err := os.MkdirTemp("", "lockstep-kubetest-")
	if err != nil {
		return nil, err
	}
	b := &Bed{Dir: dir, logs: logs}
	ok := false
	defer func() {
		if !ok {
			b.Stop()
		}
	}()
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := b.start(filepath.Join(assets, "etcd"),
		"--data-dir="+filepath.Join(dir, "etcd"), "--name=default",
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync",
	); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(AdminToken + ",admin,1,\"system:masters\"\n" +
			LockstepToken + "," + LockstepUser + ",2\n"),
		"stages.yaml":   append(slices.Clone(stages), clusterLogs(filepath.Join(dir, "container.log"))...),
		"container.log": criLog(ContainerLog),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	b.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	if err := b.start(filepath.Join(assets, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--cert-dir="+filepath.Join(dir, "certs"),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
		"--authorization-mode=RBAC", "--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--service-account-issuer=https://127.0.0.1", "--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount",
	); err != nil {
		return nil, err
	}
	admin, err := kubernetes.NewForConfig(b.Config(AdminToken))
	if err != nil {
		return nil, err
	}
	if err := waitReady(admin); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := b.WriteKubeconfig(kubeconfig, AdminToken); err != nil {
		return nil, err
	}
	if err := b.startKwok(kwok, kubeconfig, ports[3]); err != nil {
		return nil, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: NodeName, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": NodeName},
	}}
	if _, err := admin.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create kwok node: %w", err)
	}
	ok = true
	return b, nil
}

func (b *Bed) start(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	b.procs = append(b.procs, cmd)
	return nil
}

// startKwok starts kwok, serving the node's kubelet API (container logs)
// on port, which the node's status names for kube-apiserver.
func (b *Bed) startKwok(kwok, kubeconfig string, port int) error {
	if err := b.start(kwok, "--kubeconfig="+kubeconfig, "--config="+filepath.Join(b.Dir, "stages.yaml"),
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=127.0.0.1:"+strconv.Itoa(port), "--node-port="+strconv.Itoa(port),
	); err != nil {
		return err
	}
	b.kwok = b.procs[len(b.procs)-1]
	return nil
}

// ContainerLog is the log kwok serves for every container of every Pod
// (pods/log), as the kubelet would serve what the container wrote.
const ContainerLog = "lockstep test bed: the container's output\nsecond line\n"

// criLog returns log in the CRI log format, the format of the files kwok
// serves container logs from.
func criLog(log string) []byte {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(log, "\n") {
		if line != "" {
			fmt.Fprintf(&b, "2026-01-01T00:00:00.000000000Z stdout F %s", line)
		}
	}
	return b.Bytes()
}

// clusterLogs returns the kwok configuration that serves file as the log
// of every container.
func clusterLogs(file string) []byte {
	return fmt.Appendf(nil, `---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: every-container
spec:
  logs:
  - logsFile: %q
`, file)
}

// Config returns a client configuration for the user of token, with
// QPS and burst high enough for bulk tests.
func (b *Bed) Config(token string) *rest.Config {
	return &rest.Config{
		Host: b.Host, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000, Burst: 2000,
	}
}

// WriteKubeconfig writes a kubeconfig file for the user of token.
func (b *Bed) WriteKubeconfig(path, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: user
  user: {token: %q}
contexts:
- name: testbed
  context: {cluster: testbed, user: user}
current-context: testbed
`, b.Host, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// Stop kills the test bed's processes and removes its directory.
func (b *Bed) Stop() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		p := b.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		_ = p.Wait()
	}
	b.procs = nil
	if b.Dir != "" {
		_ = os.RemoveAll(b.Dir)
	}
}

func waitReady(c kubernetes.Interface) error {
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			// The default namespace appears a moment after readyz.
			_, err = c.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond) // a process starting up: nothing to wait on but time
	}
	return fmt.Errorf("kube-apiserver not ready after 3m: %v", last)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Namespace creates a namespace for one test.
func Namespace(ctx context.Context, c kubernetes.Interface, name string) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ReleaseAnnotation ends a Pod whose KWOK_OUTCOME is hold: kwok then
// ends its test container with exit code KWOK_EXIT (default 0).
const ReleaseAnnotation = "lockstep.test/release"

// Release annotates Pod ns/name with ReleaseAnnotation, retrying on
// conflicts like any writer.
func Release(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[ReleaseAnnotation] = "true"
		_, err = c.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		return err
	})
}
