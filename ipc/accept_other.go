//go:build !unix

package ipc

func outOfDescriptors(error) bool { return false }

func errnoText(err error) string { return err.Error() }

func descriptorLimit() int { return 0 }
