//go:build !linux

package agent

import (
	"net"
	"syscall"

	"github.com/sirupsen/logrus"
)

// MaybeSupervise does nothing where the agent is not supported.
func MaybeSupervise() {}

type supClient struct{}

type watchStream struct{ net.Conn }

func (a *Agent) startSupervised() error { return errUnsupported }
func (a *Agent) launchSupervised(*container, string, []string, []string, string) (int, error) {
	return 0, errUnsupported
}
func (a *Agent) registerSupervised(*container, int, logrus.FieldLogger) {}
func (a *Agent) signalSupervised(string, syscall.Signal) error          { return errUnsupported }
func (a *Agent) forgetSupervised(string) error                          { return errUnsupported }
