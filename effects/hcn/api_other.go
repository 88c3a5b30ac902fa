//go:build !windows

package hcn

import (
	"fmt"
	"runtime"
)

// NewAPI fails here: HCN exists only on Windows. (The reconciler and its
// documents build and are tested everywhere, over hcnfake.)
func NewAPI() (API, error) {
	return nil, fmt.Errorf("%w (this is %s)", ErrUnsupported, runtime.GOOS)
}
