package database

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A connection string without connect_timeout gets defaultConnectTimeout;
// one that sets it keeps it, 0 (wait for ever) included.
func TestDefaultConnectTimeout(t *testing.T) {
	t.Setenv("PGCONNECT_TIMEOUT", "")
	for _, c := range []struct {
		conn string
		want time.Duration
	}{
		{"postgres://u@127.0.0.1:5432/db?sslmode=disable", defaultConnectTimeout},
		{"host=127.0.0.1 user=u dbname=db", defaultConnectTimeout},
		{"postgres://u@127.0.0.1:5432/db?sslmode=disable&connect_timeout=3", 3 * time.Second},
		{"host=127.0.0.1 user=u connect_timeout=0", 0},
	} {
		b, err := newPG(Config{Client: ClientPG, Connection: c.conn}, logrus.NewEntry(logrus.New()))
		if err != nil {
			t.Fatalf("%s: %v", c.conn, err)
		}
		if got := b.conf.ConnectTimeout; got != c.want {
			t.Errorf("%s: connect timeout %s, want %s", c.conn, got, c.want)
		}
	}
}
