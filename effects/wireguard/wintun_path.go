package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// wintunDLL is the file Wintun's user-space library ships as.
const wintunDLL = "wintun.dll"

// wintunPlaces returns the folders wintun.dll is looked for in, in order,
// as the reference daemon looks: <programData>\ZLayer\wintun, then the
// folder of the executable. An empty programData (the variable unset)
// stands for C:\ProgramData; an empty exeDir (the executable's path
// unknown) is left out. Pure, so that the order is tested on every
// platform.
func wintunPlaces(programData, exeDir string) []string {
	if programData == "" {
		programData = `C:\ProgramData`
	}
	places := []string{joinWin(programData, "ZLayer", "wintun")}
	if exeDir != "" {
		places = append(places, exeDir)
	}
	return places
}

// joinWin joins with the separator the base already uses: a Windows path
// keeps its backslashes when the tests run on Linux.
func joinWin(base string, elems ...string) string {
	if strings.Contains(base, `\`) && filepath.Separator != '\\' {
		return strings.Join(append([]string{strings.TrimRight(base, `\`)}, elems...), `\`)
	}
	return filepath.Join(append([]string{base}, elems...)...)
}

// ErrNoWintun is wrapped by the error findWintun returns when no folder
// holds wintun.dll.
var ErrNoWintun = errors.New("wintun.dll not found")

// findWintun returns the path of the first wintun.dll in places (a regular
// file). When none holds one, the error names every place looked in. An
// error other than "does not exist" reading a place (access denied) is
// kept in the message, and the search goes on.
func findWintun(places []string) (string, error) {
	var looked []string
	for _, dir := range places {
		p := joinWin(dir, wintunDLL)
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.Mode().IsRegular():
			return p, nil
		case err == nil:
			looked = append(looked, p+" (not a regular file)")
		case errors.Is(err, fs.ErrNotExist):
			looked = append(looked, p)
		default:
			looked = append(looked, fmt.Sprintf("%s (%v)", p, err))
		}
	}
	return "", fmt.Errorf("%w: looked in %s; install Wintun (https://www.wintun.net) there", ErrNoWintun, strings.Join(looked, ", then "))
}
