package effects

// StepError says which step of putting an object in place failed (a
// container's "veth", an HCN "endpoint"): an attach answered err names it,
// and the metrics count failures by it.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Step wraps err as step name's failure (nil stays nil).
func Step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err}
}
