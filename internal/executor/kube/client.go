package kube

import (
	"fmt"
	"net/http"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lockstep-ci/lockstep/internal/config"
)

// RESTConfig returns the client configuration the kubernetes section
// names: its kubeconfig file, or the Pod's service account when there is
// none, with its QPS and burst, and requests recorded in m (if set).
func RESTConfig(k config.Kubernetes, m *Metrics) (*rest.Config, error) {
	k = k.Effective()
	var (
		rc  *rest.Config
		err error
	)
	if k.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration (%s): %w", k, err)
	}
	rc.QPS, rc.Burst = k.QPS, k.Burst
	rc.UserAgent = "lockstep"
	Instrumented(rc, m)
	return rc, nil
}

// Instrumented makes rc's requests recorded in m (nil: no change).
func Instrumented(rc *rest.Config, m *Metrics) {
	if m == nil {
		return
	}
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { return NewInstrument(next, m, nil) })
}

// NewClient returns a clientset for the kubernetes section.
func NewClient(k config.Kubernetes, m *Metrics) (kubernetes.Interface, error) {
	rc, err := RESTConfig(k, m)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}
