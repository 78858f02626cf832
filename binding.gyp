{
  "targets": [
    {
      "target_name": "vfiod_native",
      "sources": [
        "native/addon.cc",
        "native/socket.cc",
        "native/watcher.cc",
        "native/memory.cc",
        "native/guard.cc",
        "native/eventfd.cc",
        "native/poller.cc",
        "native/file.cc",
        "native/crc32c.cc",
        "native/copy.cc",
        "native/vfio.cc",
        "native/loop.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a method call on a wrapped object (LoopTurn.request) in a worker
      # being terminated cannot throw its error; without it node-addon-api aborts the whole process.
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lpthread", "-ldl"]
    }
  ]
}
