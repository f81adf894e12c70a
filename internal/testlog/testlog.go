// Package testlog gives tests a logger that stays quiet unless the run is
// verbose (go test -v), where debug logs help read a failure.
package testlog

import (
	"io"
	"os"
	"testing"

	"github.com/sirupsen/logrus"
)

// New returns the logger: discarded, or debug on stderr under -v.
func New() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}
