module tunebench/tests/ollama-template

go 1.19
