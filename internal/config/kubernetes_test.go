package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestKubernetesJob(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, `
kubernetes:
  kubeconfig: /etc/lockstep/kubeconfig
  namespace: ci
  max_pending: 50
repos:
  acme/widget:
    presubmits:
      - name: unit
        executor: kubernetes
        image: golang:1.25
        run: go test ./...
        service_account: builder
        resources: {requests: {cpu: "2", memory: 4Gi}}
        node_selector: {pool: ci}
        tolerations: [{key: dedicated, operator: Equal, value: ci, effect: NoSchedule}]
      - name: prow-shaped
        executor: kubernetes
        namespace: test-pods
        spec:
          containers:
          - image: gcr.io/k8s-staging-test-infra/kubekins-e2e:latest
            command: [runner.sh]
            args: [make, verify]
`)
	w := c.Repos["acme/widget"]
	unit, _ := w.Presubmit("unit")
	var got KubeRun
	if err := json.Unmarshal(unit.ExecutorConfig(c.GitLab), &got); err != nil {
		t.Fatal(err)
	}
	want := KubeRun{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: TestContainer, Image: "golang:1.25", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
		}}},
		ServiceAccountName: "builder",
		NodeSelector:       map[string]string{"pool": "ci"},
		Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ci", Effect: corev1.TaintEffectNoSchedule}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unit's executor config (-want +got):\n%s", diff)
	}
	prow, _ := w.Presubmit("prow-shaped")
	if err := json.Unmarshal(prow.ExecutorConfig(c.GitLab), &got); err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "test-pods" || got.Spec.Containers[0].Command[0] != "runner.sh" {
		t.Errorf("prow-shaped's executor config %+v, want namespace test-pods and command runner.sh", got)
	}
	if k := c.Kubernetes.Effective(); k.Namespace != "ci" || k.CloneImage != DefaultKubeCloneImage || k.ScheduleTimeout.Duration != DefaultKubeScheduleTimeout {
		t.Errorf("effective kubernetes section %+v", k)
	}
}

func TestKubernetesValidation(t *testing.T) {
	t.Parallel()
	const jp = `repos["acme/widget"].presubmits`
	err := mustParse(t, `
kubernetes: {namespace: Not_A_Label, qps: -1, max_pending: -2, schedule_timeout: 30}
repos:
  acme/widget:
    presubmits:
      - {name: a, executor: kubernetes}
      - {name: b, executor: kubernetes, image: x, spec: {containers: [{image: y}]}}
      - {name: c, executor: kubernetes, image: x}
      - {name: d, executor: kubernetes, spec: {containers: [{image: y, comand: [z]}]}}
      - {name: e, executor: kubernetes, spec: {containers: [{name: clone, command: [z]}], nodeName: n, restartPolicy: Always}}
      - {name: f, run: make, image: x, node_selector: {a: b}}
      - {name: g, executor: kubernetes, image: x, run: y, resources: {requests: {cpu: lots}}, namespace: "UP"}
`).Validate()
	if err == nil {
		t.Fatal("Validate: nil, want problems")
	}
	for _, w := range []string{
		jp + `[0]: a kubernetes job needs image (with run) or spec`,
		jp + `[1]: image and spec are mutually exclusive`,
		jp + `[2].run: required with image`,
		jp + `[3].spec: not a Pod spec: json: unknown field "comand"`,
		jp + `[4].spec.containers[0].image: required`,
		jp + `[4].spec.containers[0].name: "clone" is taken`,
		jp + `[4].spec.nodeName: lockstep does not pin Pods`,
		jp + `[4].spec.restartPolicy: must be Never`,
		jp + `[5].image: is only for jobs with executor: kubernetes`,
		jp + `[5].node_selector: is only for jobs with executor: kubernetes`,
		jp + `[6].resources: not resource requirements`,
		jp + `[6].namespace: "UP" is not a namespace name`,
		"kubernetes.namespace:", "kubernetes.qps:", "kubernetes.max_pending:", "kubernetes.schedule_timeout:",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v\nwant a problem containing %q", err, w)
		}
	}
}
