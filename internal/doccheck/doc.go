// Package doccheck holds the test that keeps the repository's documentation
// (README.md and docs/*.md) honest: every relative link resolves, nothing
// points outside the repository, and the names the docs must list — the
// packages, the appliance's property keys and files, the API's paths, codes
// and statuses — are the ones in the code. It has no code of its own.
package doccheck
