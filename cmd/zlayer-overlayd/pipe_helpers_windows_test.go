package main

import (
	"strconv"
	"unsafe"
)

func unsafePointer(p *uint32) unsafe.Pointer { return unsafe.Pointer(p) }

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 16) }

// fileAllAccess is FILE_ALL_ACCESS (STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0x1FF).
const fileAllAccess = 0x001F01FF
