//! Bench fixture: a Rust proxy-wasm HTTP filter that only continues, so `make bench` can tell
//! the cost of running any Wasm filter in Envoy's V8 from the cost of npm-connector's logic.
//! Configured with `copy-body`, it also reads every response body chunk into the VM and writes
//! it back unchanged: the floor of any Wasm filter that rewrites bodies.

#[cfg(target_arch = "wasm32")]
mod noop {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { copy_body: false }) });
    }}

    struct Root {
        copy_body: bool,
    }
    impl Context for Root {}
    impl RootContext for Root {
        fn on_configure(&mut self, _: usize) -> bool {
            self.copy_body = self.get_plugin_configuration().as_deref() == Some(b"copy-body".as_slice());
            true
        }
        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop { copy_body: self.copy_body }))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop {
        copy_body: bool,
    }
    impl Context for Noop {}
    impl HttpContext for Noop {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            Action::Continue
        }
        fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
            if self.copy_body {
                // As the rewriter does: the body may change length, Envoy re-frames it.
                self.set_http_response_header("content-length", None);
            }
            Action::Continue
        }
        fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
            if self.copy_body {
                let chunk = self.get_http_response_body(0, size).unwrap_or_default();
                self.set_http_response_body(0, size, &chunk);
            }
            Action::Continue
        }
    }
}
