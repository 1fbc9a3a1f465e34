;; A health-check plugin whose core module has two linear memories of
;; 40 MiB each (`EXTRA_PAGES` is replaced by the test: 640 pages = 40 MiB,
;; or a small size for the control). Each memory alone is under the 64 MiB
;; cap; together they are over it, and the cap is the plugin's as a whole.
;; tests/sandbox.rs turns it into a component with wit-component.
(module
  (memory (export "memory") 640)
  (memory $extra EXTRA_PAGES)
  (global $next (mut i32) (i32.const 4096))

  ;; describe's return area: plugin-info is name, version, description,
  ;; options, http-paths as (pointer, length) pairs; only the first two
  ;; are non-empty.
  (data (i32.const 16) "\00\01\00\00\0c\00\00\00\10\01\00\00\05\00\00\00")
  (data (i32.const 256) "multi-memory")
  (data (i32.const 272) "0.0.1")

  (func (export "vpcrouter:plugin/health-check@0.1.0#describe") (result i32)
    ;; Touch the extra memory so it is really used.
    (i32.store $extra (i32.const 0) (i32.const 1))
    i32.const 16)
  ;; init: ok (a zeroed result<_, string>).
  (func (export "vpcrouter:plugin/health-check@0.1.0#init") (param i32 i32) (result i32)
    i32.const 64)
  ;; check: ok with an empty list.
  (func (export "vpcrouter:plugin/health-check@0.1.0#check") (param i32 i32) (result i32)
    i32.const 96)
  ;; A bump allocator for what the host passes in.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
    (global.set $next (i32.add (local.get $at) (local.get 3)))
    local.get $at)
)
