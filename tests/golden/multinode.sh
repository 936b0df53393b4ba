DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-405b-instruct \
    --host 127.0.0.1 \
    --port 41000 \
    --max-model-len 131072 \
    --dtype bfloat16 \
    --tensor-parallel-size 8 \
    --pipeline-parallel-size 2 \
    --distributed-executor-backend ray \
    --gpu-memory-utilization 0.92 \
    --max-num-seqs 64 \
    --max-num-batched-tokens 8192 \
    --kv-cache-dtype auto \
    --tool-call-parser llama3_json \
    --enable-chunked-prefill \
    --enable-prompt-tokens-details \
    --enable-auto-tool-choice
