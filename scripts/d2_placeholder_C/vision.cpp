// Placeholder for detectron2's compiled `_C` module (wssis-d2's own source).
//
// The only detectron2 0.6 redistribution on PyPI (the `pb1-detectron2` sdist) ships no C++ sources,
// yet several detectron2 modules do `from detectron2 import _C` at import time. wssis-d2 needs none of
// detectron2's custom ops (SOLOv2 here is plain PyTorch), so this module only provides the three
// introspection functions that `collect_env_info()` / `default_setup()` call. It uses only the
// Python C API (no torch symbols). Without rotated-box ops, DeformConv and the fast COCO evaluation, callers must feature-detect
// (see wssis_d2.evaluation.has_fast_coco_eval).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject* get_compiler_version(PyObject*, PyObject*) {
#if defined(__clang__)
  return PyUnicode_FromFormat("clang %d.%d", __clang_major__, __clang_minor__);
#elif defined(__GNUC__)
  return PyUnicode_FromFormat("GCC %d.%d", __GNUC__, __GNUC_MINOR__);
#else
  return PyUnicode_FromString("unknown");
#endif
}

static PyObject* get_cuda_version(PyObject*, PyObject*) {
  // Built without CUDA: detectron2 treats "not available" as a CPU-only build.
  return PyUnicode_FromString("not available");
}

static PyObject* has_cuda(PyObject*, PyObject*) { Py_RETURN_FALSE; }

static PyMethodDef kMethods[] = {
    {"get_compiler_version", get_compiler_version, METH_NOARGS, "Compiler that built this module."},
    {"get_cuda_version", get_cuda_version, METH_NOARGS, "CUDA version (none in the placeholder)."},
    {"has_cuda", has_cuda, METH_NOARGS, "Whether the module was built with CUDA ops."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C",
                                     "wssis-d2 placeholder for detectron2._C (no custom ops).", -1,
                                     kMethods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&kModule); }
