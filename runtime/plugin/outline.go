package plugin

import (
	"github.com/tetratelabs/wazero"

	"github.com/greenroom-dev/greenroom/runtime/plugin/instrument"
)

// outlineOf is the outline of a compiled module, as wazero lists it.
// compile describes a module from the outline instrument.ReadOutline reads
// from its sections instead (the same, TestOutlineReadAsWazeroListsIt:
// listing it makes wazero build and keep a definition of every function of
// the module), and falls back to this one only where that read fails.
func outlineOf(cm wazero.CompiledModule) instrument.Outline {
	o := instrument.Outline{Exports: map[string]instrument.FuncType{}, Memories: map[string]uint32{}}
	for name, f := range cm.ExportedFunctions() {
		o.Exports[name] = instrument.FuncType{Params: f.ParamTypes(), Results: f.ResultTypes()}
	}
	for name, m := range cm.ExportedMemories() {
		o.Memories[name] = m.Min()
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		o.Imports = append(o.Imports, instrument.FuncImport{Module: mod, Name: name, Type: instrument.FuncType{Params: f.ParamTypes(), Results: f.ResultTypes()}})
	}
	return o
}
