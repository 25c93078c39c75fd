package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// hostCounters are the host's cumulative counters read from /proc.
type hostCounters struct {
	cpuBusy, cpuTotal uint64 // jiffies
	rx, tx            uint64 // bytes on every interface but loopback
}

// readHostCounters reads /proc/stat and /proc/net/dev under procRoot.
func readHostCounters(procRoot string) (hostCounters, error) {
	var c hostCounters
	b, err := os.ReadFile(procRoot + "/stat")
	if err != nil {
		return c, fmt.Errorf("monitor: read %s/stat: %w", procRoot, err)
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return c, fmt.Errorf("monitor: %s/stat: unexpected first line", procRoot)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return c, fmt.Errorf("monitor: %s/stat: %w", procRoot, err)
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		c.cpuTotal += n
		if i != 3 && i != 4 { // idle, iowait
			c.cpuBusy += n
		}
	}
	nd, err := os.ReadFile(procRoot + "/net/dev")
	if err != nil {
		return c, fmt.Errorf("monitor: read %s/net/dev: %w", procRoot, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(nd))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 9 {
			continue
		}
		rx, _ := strconv.ParseUint(fs[0], 10, 64)
		tx, _ := strconv.ParseUint(fs[8], 10, 64)
		c.rx += rx
		c.tx += tx
	}
	return c, nil
}

// readMemory returns the host's total and used memory (total minus
// MemAvailable) from /proc/meminfo.
func readMemory(procRoot string) (total, used int64, err error) {
	b, err := os.ReadFile(procRoot + "/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("monitor: read %s/meminfo: %w", procRoot, err)
	}
	var avail int64 = -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = n * 1024
		case "MemAvailable:":
			avail = n * 1024
		}
	}
	if total == 0 || avail < 0 {
		return 0, 0, fmt.Errorf("monitor: %s/meminfo lacks MemTotal or MemAvailable", procRoot)
	}
	return total, total - avail, nil
}

// readDisk returns the size and used bytes of the file system holding dir.
func readDisk(dir string) (total, used int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("monitor: statfs %s: %w", dir, err)
	}
	bs := int64(st.Bsize)
	total = int64(st.Blocks) * bs
	used = total - int64(st.Bfree)*bs
	return total, used, nil
}
