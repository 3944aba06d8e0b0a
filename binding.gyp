{
  "targets": [
    {
      "target_name": "node_kvm",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/event_fd.cc",
        "native/guest_mapping.cc",
        "native/host_io.cc",
        "native/kvm_system.cc",
        "native/poller.cc",
        "native/vcpu_fd.cc",
        "native/vcpu_thread.cc",
        "native/vm_fd.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "libraries": ["-lpthread"],
      "cflags_cc": ["-std=c++17", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
