// Package nstest holds braid's root-only end-to-end tests on Linux: a
// client and a concentrator in their own network namespaces, joined by
// real veth links shaped with tc, with links taken down mid-transfer.
// Everything lives in the _test.go files; the tests skip when not root or
// when network namespaces, veth or tbf are unavailable.
package nstest
