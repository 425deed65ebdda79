// Command kube-apiserver builds the upstream Kubernetes API server from the Go
// module proxy for klua's tests and demo. It only forwards to the upstream
// entry point; no behaviour of the server is changed here.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
