// Readers of untrusted files (test_untrusted_files.cpp): the fuzz targets' finds (native/fuzz),
// one case each. Adds its checks and failures to the runner's counts.
#pragma once

void run_untrusted_file_tests(int& checks, int& failures);
