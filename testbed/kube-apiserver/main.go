// Command kube-apiserver builds the upstream kube-apiserver for lockstep's
// Kubernetes test bed (scripts/kube-testbed). It is the upstream main,
// unchanged: the upstream module cannot be installed with go install
// because its go.mod replaces the k8s.io staging modules.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
