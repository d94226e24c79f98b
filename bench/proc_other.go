//go:build !linux

package main

import (
	"errors"
	"syscall"
)

func childAttr() *syscall.SysProcAttr { return nil }

func resetPeak(int) error { return errors.New("not on Linux") }
