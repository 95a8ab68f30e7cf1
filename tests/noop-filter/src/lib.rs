//! Bench fixture: a Rust proxy-wasm HTTP filter that only continues, so `make bench` can tell
//! the cost of running any Wasm filter in Envoy's V8 from the cost of npm-connector's logic.
//! Configured with `copy-body`, it also reads every response body chunk into the VM and writes
//! it back unchanged: the floor of any Wasm filter that rewrites bodies. Configured with a list
//! of steps (`steps:headers,props,set,count`; also `auth`, `route`), it makes those host calls on each request and
//! nothing else, so the bench can price each host call the real filter makes.

#[cfg(target_arch = "wasm32")]
mod noop {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { copy_body: false, steps: Steps::default() }) });
    }}

    /// Host calls to make per request, as the real filter does.
    #[derive(Clone, Copy, Default)]
    struct Steps {
        /// Read every request header in one call.
        headers: bool,
        /// Read `xds.route_name` and `xds.cluster_name`.
        props: bool,
        /// Read `xds.route_name` only.
        route: bool,
        /// Read the `authorization` header alone (one value: the host returns the first).
        auth: bool,
        /// Replace the `authorization` header.
        set: bool,
        /// Increment a counter.
        count: Option<u32>,
    }

    struct Root {
        copy_body: bool,
        steps: Steps,
    }
    impl Context for Root {}
    impl RootContext for Root {
        fn on_configure(&mut self, _: usize) -> bool {
            let conf = self.get_plugin_configuration().unwrap_or_default();
            let conf = String::from_utf8_lossy(&conf);
            self.copy_body = conf == "copy-body";
            if let Some(list) = conf.strip_prefix("steps:") {
                for step in list.split(',') {
                    match step {
                        "headers" => self.steps.headers = true,
                        "props" => self.steps.props = true,
                        "route" => self.steps.route = true,
                        "auth" => self.steps.auth = true,
                        "set" => self.steps.set = true,
                        "count" => {
                            self.steps.count =
                                proxy_wasm::hostcalls::define_metric(MetricType::Counter, "noop.requests").ok()
                        }
                        _ => return false,
                    }
                }
            }
            true
        }
        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop { copy_body: self.copy_body, steps: self.steps }))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop {
        copy_body: bool,
        steps: Steps,
    }
    impl Context for Noop {}
    impl HttpContext for Noop {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            let s = self.steps;
            if s.headers {
                std::hint::black_box(self.get_http_request_headers());
            }
            if s.props {
                std::hint::black_box(self.get_property(vec!["xds", "route_name"]));
                std::hint::black_box(self.get_property(vec!["xds", "cluster_name"]));
            }
            if s.route {
                std::hint::black_box(self.get_property(vec!["xds", "route_name"]));
            }
            if s.auth {
                std::hint::black_box(self.get_http_request_header("authorization"));
            }
            if s.set {
                self.set_http_request_header("authorization", Some("Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ="));
            }
            if let Some(id) = s.count {
                let _ = proxy_wasm::hostcalls::increment_metric(id, 1);
            }
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
