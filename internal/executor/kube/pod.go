package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// The labels and annotations lockstep puts on its Pods. The informer
// selects Pods by LabelManagedBy; LabelRun names the run.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedByValue   = "lockstep"
	LabelRun         = "lockstep.dev/run"
	LabelJob         = "lockstep.dev/job"
	LabelPull        = "lockstep.dev/pull"
	AnnotationJob    = "lockstep.dev/job"
	AnnotationRepo   = "lockstep.dev/repo"
	AnnotationSHA    = "lockstep.dev/sha"
	AnnotationPull   = "lockstep.dev/pull"
	AnnotationCreate = "lockstep.dev/run-created"
	// AnnotationDeleteAfter, on a finished run's Pod kept for debugging
	// (kubernetes.keep_pods), is when lockstep deletes it (RFC 3339).
	AnnotationDeleteAfter = "lockstep.dev/delete-after"
)

// The names of the Pod's parts lockstep adds.
const (
	cloneContainer = "clone"
	workspaceVol   = "lockstep-workspace"
	workspaceDir   = "/workspace"
	srcDir         = workspaceDir + "/src"
	cloneReport    = "/dev/termination-log"
)

// PodName returns the name of run r's Pod. A run is executed once (a
// re-run is a new run with a new ID), so the ID, with the attempt lockstep
// makes of it (always 1 today), names its one Pod: a second create of
// the same run gets AlreadyExists.
func PodName(id run.ID) string { return "lockstep-run-" + id.String() + "-1" }

var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// kubeRun reads the Pod spec recorded in r's spec.
func kubeRun(r *run.Run) (config.KubeRun, error) {
	var kr config.KubeRun
	if len(r.Spec.ExecutorConfig) == 0 {
		return kr, fmt.Errorf("run %d records no Pod spec (its job has no image or spec)", r.ID)
	}
	if err := json.Unmarshal(r.Spec.ExecutorConfig, &kr); err != nil {
		return kr, fmt.Errorf("run %d: read its Pod spec: %w", r.ID, err)
	}
	if len(kr.Spec.Containers) == 0 {
		return kr, fmt.Errorf("run %d: its Pod spec has no container", r.ID)
	}
	return kr, nil
}

// buildPod returns the Pod that executes r: the job's spec, its first
// container the test container running in the workspace the clone init
// container prepared, with lockstep's and Prow's environment.
func (e *Executor) buildPod(r *run.Run, kr config.KubeRun, ns string) *corev1.Pod {
	spec := *kr.Spec.DeepCopy()
	refs := r.Spec.Refs

	labels := map[string]string{LabelManagedBy: ManagedByValue, LabelRun: r.ID.String()}
	if len(r.Spec.Job) <= 63 && labelValueRE.MatchString(r.Spec.Job) {
		labels[LabelJob] = r.Spec.Job
	}
	annotations := map[string]string{
		AnnotationJob:    r.Spec.Job,
		AnnotationRepo:   refs.Repo,
		AnnotationSHA:    refs.SHA(),
		AnnotationCreate: r.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
	}
	if refs.Pull != 0 {
		labels[LabelPull] = strconv.Itoa(refs.Pull)
		annotations[AnnotationPull] = strconv.Itoa(refs.Pull)
	}

	// The test container's termination message is its build file: the
	// kubelet copies the file into the Pod's status when the container
	// ends (at most 4 KiB), where lockstep reads it (outcome), while the
	// workspace is gone with the Pod.
	test := &spec.Containers[0]
	if test.TerminationMessagePath == "" {
		test.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	env := local.ProwEnv(r)
	maps.Copy(env, map[string]string{
		"ARTIFACTS":           workspaceDir + "/artifacts",
		"LOCKSTEP_BUILD_FILE": test.TerminationMessagePath,
		"GIT_TERMINAL_PROMPT": "0",
	})
	// From lowest to highest precedence, as for the local executor: the
	// container's own env, the job's env, then lockstep's and Prow's.
	jobEnv := maps.Clone(r.Spec.Env)
	if jobEnv == nil {
		jobEnv = map[string]string{}
	}
	mount := corev1.VolumeMount{Name: workspaceVol, MountPath: workspaceDir}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Env = mergeEnv(c.Env, jobEnv, env)
		c.VolumeMounts = append(c.VolumeMounts, mount)
		if c.WorkingDir == "" {
			c.WorkingDir = srcDir
		}
	}
	if len(test.Command) == 0 && len(test.Args) == 0 {
		test.Command = []string{"sh", "-e", "-c", r.Spec.Script}
	}
	clone := corev1.Container{
		Name:                     cloneContainer,
		Image:                    e.cfg.CloneImage,
		Command:                  local.CloneCommand(refs, cloneReport),
		WorkingDir:               srcDir,
		Env:                      mergeEnv(nil, map[string]string{}, env),
		VolumeMounts:             []corev1.VolumeMount{mount},
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}
	spec.InitContainers = append([]corev1.Container{clone}, spec.InitContainers...)
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name: workspaceVol, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	spec.RestartPolicy = corev1.RestartPolicyNever
	if e.cfg.NodeName != "" {
		spec.NodeName = e.cfg.NodeName
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: PodName(r.ID), Namespace: ns, Labels: labels, Annotations: annotations,
		},
		Spec: spec,
	}
}

// mergeEnv returns the container's env with job's variables and then
// lockstep's set over it, sorted by name after the container's own.
func mergeEnv(own []corev1.EnvVar, job, lockstep map[string]string) []corev1.EnvVar {
	set := maps.Clone(job)
	maps.Copy(set, lockstep)
	var out []corev1.EnvVar
	for _, v := range own {
		if _, ok := set[v.Name]; !ok {
			out = append(out, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		out = append(out, corev1.EnvVar{Name: k, Value: set[k]})
	}
	return out
}
