// The backend op table (test_backend_ops.cpp): every op of backend.h, on every backend this
// build can make, against naive references (cpu) or the cpu backend (others), and every backward
// against central finite differences. Adds its checks and failures to the runner's counts.
#pragma once

void run_backend_op_tests(int& checks, int& failures);
