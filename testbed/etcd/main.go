// Command etcd builds the upstream etcd server for lockstep's Kubernetes
// test bed (scripts/kube-testbed). Debian's etcd is too old for the
// kube-apiserver the test bed runs, and the upstream module cannot be
// installed with go install because its go.mod has replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
