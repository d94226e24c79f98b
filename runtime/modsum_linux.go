package runtime

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// fileIdentity describes the regular file at path with key
// "dev:ino:size:mtime:ctime" (times to the nanosecond), or reports false.
func fileIdentity(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{
		key: fmt.Sprintf("%d:%d:%d:%d.%09d:%d.%09d", st.Dev, st.Ino, st.Size,
			st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec),
		size:    int(st.Size),
		changed: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
	}, true
}
