// Package repocheck holds tests of the repository itself rather than of
// its code: what git tracks (no built executables; build outputs belong in
// bin/, which is ignored).
package repocheck
