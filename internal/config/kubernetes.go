package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// ExecutorKubernetes names the executor that runs each run as a Pod.
const ExecutorKubernetes = "kubernetes"

// Defaults of the kubernetes section.
const (
	DefaultKubeNamespace        = "default"
	DefaultKubeCloneImage       = "alpine/git:2.47.2"
	DefaultKubeQPS              = 20
	DefaultKubeBurst            = 40
	DefaultKubeImagePullTimeout = 5 * time.Minute
	DefaultKubeScheduleTimeout  = 10 * time.Minute
	DefaultKubeDeleteGrace      = 30 * time.Second
)

// Kubernetes says how to reach the cluster that runs the jobs with
// `executor: kubernetes`, and how lockstep treats their Pods.
type Kubernetes struct {
	// Kubeconfig is the path of a kubeconfig file; empty means lockstep
	// runs inside the cluster and uses its service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespace is where Pods are created unless a job names another;
	// default "default".
	Namespace string `yaml:"namespace"`
	// CloneImage is the image of the init container that clones the
	// repository (it needs git and sh); default alpine/git.
	CloneImage string `yaml:"clone_image"`
	// QPS and Burst limit lockstep's requests to the API server; default
	// 20 and 40.
	QPS   float32 `yaml:"qps"`
	Burst int     `yaml:"burst"`
	// MaxPending caps how many of lockstep's Pods may be pending (created,
	// not running yet) at once; more runs wait, with a condition saying
	// so. Zero means no cap.
	MaxPending int `yaml:"max_pending"`
	// ImagePullTimeout is how long a Pod may fail to pull an image before
	// its run ends as error/ImagePullFailed; default 5m.
	ImagePullTimeout Duration `yaml:"image_pull_timeout"`
	// ScheduleTimeout is how long a Pod may stay unschedulable, or its
	// creation be refused for a reason that can pass (quota, API errors),
	// before its run ends as error; default 10m.
	ScheduleTimeout Duration `yaml:"schedule_timeout"`
	// DeleteGracePeriod is the grace period of the deletes that abort a
	// run; default 30s.
	DeleteGracePeriod Duration `yaml:"delete_grace_period"`
	// KeepPods keeps a finished run's Pod this long before deleting it,
	// for debugging; default 0, deleted at once.
	KeepPods Duration `yaml:"keep_pods"`
	// NodeName, when set, is written into every Pod's spec.nodeName: for
	// clusters without a scheduler (a test bed).
	NodeName string `yaml:"node_name"`
}

// Effective returns k with its defaults filled in.
func (k Kubernetes) Effective() Kubernetes {
	if k.Namespace == "" {
		k.Namespace = DefaultKubeNamespace
	}
	if k.CloneImage == "" {
		k.CloneImage = DefaultKubeCloneImage
	}
	if k.QPS <= 0 {
		k.QPS = DefaultKubeQPS
	}
	if k.Burst <= 0 {
		k.Burst = DefaultKubeBurst
	}
	if k.ImagePullTimeout.Duration <= 0 {
		k.ImagePullTimeout.Duration = DefaultKubeImagePullTimeout
	}
	if k.ScheduleTimeout.Duration <= 0 {
		k.ScheduleTimeout.Duration = DefaultKubeScheduleTimeout
	}
	if k.DeleteGracePeriod.Duration <= 0 {
		k.DeleteGracePeriod.Duration = DefaultKubeDeleteGrace
	}
	return k
}

// KubeJob is what a job with `executor: kubernetes` may add, in Prow's
// shape: either Image (the job's run script runs in it) or a full Pod
// Spec, plus where and how the Pod runs.
type KubeJob struct {
	// Image is the test container's image; the job's run script runs in
	// it with sh -e.
	Image string `yaml:"image"`
	// Spec is a full Pod spec, as in a Prow job: its first container is
	// the test container.
	Spec *KubeValue[corev1.PodSpec] `yaml:"spec"`
	// Namespace overrides kubernetes.namespace for this job.
	Namespace string `yaml:"namespace"`
	// ServiceAccount is the Pod's service account.
	ServiceAccount string `yaml:"service_account"`
	// Resources are the test container's requests and limits.
	Resources *KubeValue[corev1.ResourceRequirements] `yaml:"resources"`
	// NodeSelector and Tolerations place the Pod.
	NodeSelector map[string]string               `yaml:"node_selector"`
	Tolerations  *KubeValue[[]corev1.Toleration] `yaml:"tolerations"`
}

// KubeValue is a Kubernetes API value written in the configuration file:
// it is read as Kubernetes reads it (its JSON field names), strictly.
// Validate reports what does not fit, with its path.
type KubeValue[T any] struct {
	Value T
	err   error
}

// UnmarshalYAML reads the node as JSON into Value, refusing unknown
// fields; a mismatch is kept for Validate to report.
func (k *KubeValue[T]) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		k.err = err
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var out T
	if err := dec.Decode(&out); err != nil {
		k.err = err
		return nil
	}
	k.Value, k.err = out, nil
	return nil
}

// KubeRun is what a run of a kubernetes job records of the job's
// configuration in run.Spec.ExecutorConfig: the Pod spec to run (its
// first container the test container), and where.
type KubeRun struct {
	Namespace string         `json:"namespace,omitempty"`
	Spec      corev1.PodSpec `json:"spec"`
}

// TestContainer is the name of the test container of a Pod built from
// image: and run:.
const TestContainer = "test"

// kubeRun returns the KubeRun of j.
func (j JobBase) kubeRun() KubeRun {
	var spec corev1.PodSpec
	if j.Spec != nil {
		spec = *j.Spec.Value.DeepCopy()
	} else {
		spec.Containers = []corev1.Container{{Name: TestContainer, Image: j.Image}}
	}
	if len(spec.Containers) > 0 {
		if j.Resources != nil {
			spec.Containers[0].Resources = *j.Resources.Value.DeepCopy()
		}
	}
	if j.ServiceAccount != "" {
		spec.ServiceAccountName = j.ServiceAccount
	}
	if len(j.NodeSelector) > 0 {
		spec.NodeSelector = j.NodeSelector
	}
	if j.Tolerations != nil {
		spec.Tolerations = j.Tolerations.Value
	}
	return KubeRun{Namespace: j.Namespace, Spec: spec}
}

// validateKube checks the fields of a job with executor: kubernetes.
func (j *JobBase) validateKube(path string, p *problemList) {
	if j.GitLab != nil {
		p.addf(fieldPath(path, "gitlab"), "is only for jobs with executor: gitlab")
	}
	switch {
	case j.Image == "" && j.Spec == nil:
		p.addf(path, "a kubernetes job needs image (with run) or spec")
	case j.Image != "" && j.Spec != nil:
		p.addf(path, "image and spec are mutually exclusive: put the image in spec.containers[0].image")
	case j.Image != "" && strings.TrimSpace(j.Run) == "":
		p.addf(fieldPath(path, "run"), "required with image")
	case j.Spec != nil:
		sp := fieldPath(path, "spec")
		if j.Spec.err != nil {
			p.addf(sp, "not a Pod spec: %v", j.Spec.err)
			break
		}
		s := j.Spec.Value
		if len(s.Containers) == 0 {
			p.addf(fieldPath(sp, "containers"), "required: at least the test container")
		}
		names := map[string]bool{"clone": true}
		for i, c := range s.Containers {
			cp := indexPath(fieldPath(sp, "containers"), i)
			if c.Image == "" {
				p.addf(fieldPath(cp, "image"), "required")
			}
			if c.Name != "" && names[c.Name] {
				p.addf(fieldPath(cp, "name"), "%q is taken (lockstep's init container is clone)", c.Name)
			}
			names[c.Name] = true
		}
		if i := len(s.Containers); i > 0 && len(s.Containers[0].Command) == 0 && len(s.Containers[0].Args) == 0 && strings.TrimSpace(j.Run) == "" {
			p.addf(fieldPath(sp, "containers[0].command"), "required unless the job has run")
		}
		if s.NodeName != "" {
			p.addf(fieldPath(sp, "nodeName"), "lockstep does not pin Pods to nodes: use node_selector")
		}
		if s.RestartPolicy != "" && s.RestartPolicy != corev1.RestartPolicyNever {
			p.addf(fieldPath(sp, "restartPolicy"), "must be Never (a run is one attempt), got %s", s.RestartPolicy)
		}
	}
	if j.Resources != nil && j.Resources.err != nil {
		p.addf(fieldPath(path, "resources"), "not resource requirements: %v", j.Resources.err)
	}
	if j.Tolerations != nil && j.Tolerations.err != nil {
		p.addf(fieldPath(path, "tolerations"), "not a list of tolerations: %v", j.Tolerations.err)
	}
	if j.Namespace != "" && !dnsLabelRE.MatchString(j.Namespace) {
		p.addf(fieldPath(path, "namespace"), "%q is not a namespace name (a DNS label)", j.Namespace)
	}
}

// validateNotKube reports the kubernetes fields on a job that runs
// elsewhere.
func (j *JobBase) validateNotKube(path string, p *problemList) {
	set := map[string]bool{
		"image": j.Image != "", "spec": j.Spec != nil, "namespace": j.Namespace != "",
		"service_account": j.ServiceAccount != "", "resources": j.Resources != nil,
		"node_selector": j.NodeSelector != nil, "tolerations": j.Tolerations != nil,
	}
	for _, f := range []string{"image", "spec", "namespace", "service_account", "resources", "node_selector", "tolerations"} {
		if set[f] {
			p.addf(fieldPath(path, f), "is only for jobs with executor: kubernetes")
		}
	}
}

// usesKubernetes reports whether a job of c runs on Kubernetes.
func (c *Config) usesKubernetes() bool {
	for _, j := range c.Jobs() {
		if j.ExecutorName() == ExecutorKubernetes {
			return true
		}
	}
	return false
}

// validateKubernetes checks the kubernetes section.
func (c *Config) validateKubernetes(p *problemList) {
	k := c.Kubernetes
	if k.Namespace != "" && !dnsLabelRE.MatchString(k.Namespace) {
		p.addf("kubernetes.namespace", "%q is not a namespace name (a DNS label)", k.Namespace)
	}
	if k.QPS < 0 {
		p.addf("kubernetes.qps", "must not be negative, got %v", k.QPS)
	}
	if k.Burst < 0 {
		p.addf("kubernetes.burst", "must not be negative, got %d", k.Burst)
	}
	if k.MaxPending < 0 {
		p.addf("kubernetes.max_pending", "must not be negative, got %d", k.MaxPending)
	}
	for _, d := range []struct {
		name string
		d    Duration
	}{
		{"image_pull_timeout", k.ImagePullTimeout}, {"schedule_timeout", k.ScheduleTimeout},
		{"delete_grace_period", k.DeleteGracePeriod}, {"keep_pods", k.KeepPods},
	} {
		if msg := d.d.problem(); msg != "" {
			p.addf(fieldPath("kubernetes", d.name), "%s", msg)
		} else if d.d.Duration < 0 {
			p.addf(fieldPath("kubernetes", d.name), "must not be negative, got %s", d.d)
		}
	}
}

// resolveKubernetesFiles makes kubernetes.kubeconfig absolute against dir.
func (c *Config) resolveKubernetesFiles(dir string) {
	if f := c.Kubernetes.Kubeconfig; f != "" && !filepath.IsAbs(f) {
		c.Kubernetes.Kubeconfig = filepath.Join(dir, f)
	}
}

// String returns where the kubernetes section points, for logs.
func (k Kubernetes) String() string {
	if k.Kubeconfig == "" {
		return "kubernetes in-cluster"
	}
	return fmt.Sprintf("kubernetes %s", k.Kubeconfig)
}
