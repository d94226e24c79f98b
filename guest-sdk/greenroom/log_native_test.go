//go:build !wasip1

package greenroom

import (
	"log/slog"
	"testing"
)

func TestNativeLoggerWritesText(t *testing.T) {
	if Logger() == nil || Logger() != Logger() {
		t.Fatal("Logger is not one logger")
	}
	if _, ok := Logger().Handler().(*slog.TextHandler); !ok {
		t.Errorf("native Logger handler is %T", Logger().Handler())
	}
}
