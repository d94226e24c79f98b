package database

import "testing"

// A transaction's handle is never one still open in the instance: past
// 2^31-1 handles start again at 1, skipping those in use. The wrap gave
// the handle of a transaction still open (a task run without a timeout
// holding transaction 1 while it began and ended 2^31 more) to a new one,
// which replaced it: the first's connection was never given back to the
// pool, nor its transaction ended.
func TestTxHandleSkipsOpenOnes(t *testing.T) {
	st := &txState{next: 1<<31 - 2, open: map[uint32]*openTx{1: {}, 2: {}, 1<<31 - 1: {}}}
	for _, want := range []uint32{3, 4} {
		if got := st.add(&openTx{}); got != want {
			t.Fatalf("handle %d, want %d", got, want)
		}
	}
	if len(st.open) != 5 {
		t.Errorf("%d open, want 5", len(st.open))
	}
}
