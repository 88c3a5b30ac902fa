package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// call sends one request given as the JSON of the request object (with its
// "op") and prints the response object.
func (a *app) call(args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf(`call: want one argument, the request object, e.g. '{"op":"status"}'`)}
	}
	frame := fmt.Sprintf(`{"frame":"request","id":1,"request":%s}`, args[0])
	f, err := ipc.DecodeFrame([]byte(frame))
	if err != nil {
		return usageError{fmt.Errorf("call: %v", err)}
	}
	c, err := ipc.Dial(context.Background(), a.socket, ipc.DialOptions{Attempts: 3, CallTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Call(context.Background(), f.Request)
	if err != nil {
		return err
	}
	b, err := ipc.EncodeResponse(1, r)
	if err != nil {
		return err
	}
	var env struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s\n", env.Response)
	return nil
}
