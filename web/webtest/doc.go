// Package webtest holds the end-to-end tests of the web client (package
// web): Debian's headless Chromium, driven with chromedp, against a real
// server on a loopback port that mails through a real SMTP receiver.
//
// Without Chromium (/usr/bin/chromium, or REWIND_CHROMIUM) the tests are
// skipped and say so, unless CI=true or REWIND_REQUIRE_BROWSER=1 (as
// .ci/run sets) makes them fail. REWIND_SCREENSHOTS=dir writes the
// screenshots the tests take into dir (docs/screenshots holds the
// committed ones); otherwise they go to a temporary directory.
package webtest
