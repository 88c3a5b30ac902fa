package journal

// syncDir is a no-op on Windows, where a directory cannot be fsync'd (a
// rename is made durable by the file system's own journal).
func syncDir(dir string) error { return nil }
