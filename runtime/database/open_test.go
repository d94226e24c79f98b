package database_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/database"
)

// Open keeps its failure until RetryOpen (a reload calls it), then tries
// again.
func TestRetryOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// A file where the databases' directory should be: SQLite cannot
	// open there.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := database.New(database.Config{Client: database.ClientSQLite, Connection: dir}, logrus.New())
	defer svc.Close()
	ctx := context.Background()
	if err := svc.Open(ctx); err == nil {
		t.Fatal("Open succeeded over a file")
	}
	os.Remove(dir)
	if err := svc.Open(ctx); err == nil {
		t.Fatal("Open tried again before RetryOpen")
	}
	svc.RetryOpen()
	if err := svc.Open(ctx); err != nil {
		t.Fatalf("Open after RetryOpen: %v", err)
	}
	svc.RetryOpen() // nothing to retry: stays open
	if svc.DB() == nil {
		t.Fatal("RetryOpen dropped an open database")
	}
}
