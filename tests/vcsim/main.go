// Command vcsim-peer starts govmomi's vCenter simulator (vcsim) with its vAPI /rest endpoints,
// prints one line of JSON describing it, and serves until SIGTERM, SIGINT or the end of stdin.
//
// Build (GOPATH mode, Debian's golang-github-vmware-govmomi-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o vcsim-peer tests/vcsim/main.go
package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // registers the /rest (vAPI) endpoints
)

// startLine is what the Python side reads to find the simulator.
type startLine struct {
	URL         string `json:"url"`
	Scheme      string `json:"scheme"`
	DatastoreID string `json:"datastore_id"`
	Datastore   string `json:"datastore_name"`
	Username    string `json:"username"`
	Password    string `json:"password"`
	PID         int    `json:"pid"`
}

func main() {
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim-peer: create model:", err)
		os.Exit(1)
	}
	defer model.Remove()

	// 127.0.0.1:0 lets the kernel pick a free port; NewServer reports the one it got.
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	model.Service.TLS = new(tls.Config) // self-signed localhost certificate, like Model.Run does
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	defer server.Close()

	ds := simulator.Map.Any("Datastore")
	if ds == nil {
		fmt.Fprintln(os.Stderr, "vcsim-peer: the model has no datastore")
		os.Exit(1)
	}
	password, _ := server.URL.User.Password()
	base := url.URL{Scheme: server.URL.Scheme, Host: server.URL.Host}
	line := startLine{
		URL:         base.String(),
		Scheme:      server.URL.Scheme,
		DatastoreID: ds.Reference().Value,
		Datastore:   ds.Entity().Name,
		Username:    server.URL.User.Username(),
		Password:    password,
		PID:         os.Getpid(),
	}
	if err := json.NewEncoder(os.Stdout).Encode(line); err != nil {
		os.Exit(1)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stop:
	case <-stdinClosed:
	}
}
