package upgrade

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// zeroRange makes [off, off+n) of f read as zeros, cheaply where the
// storage allows: BLKZEROOUT on a block device (a virtual disk turns it
// into write-zeroes or unmap), a punched hole in a file, else written
// zeros.
func zeroRange(f *os.File, off, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeDevice != 0 {
		r := [2]uint64{uint64(off), uint64(n)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); e == 0 {
			return nil
		}
	} else if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	} else if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}
