"""A short prepared training run of ViLT-B/32 at its real size: examples/s, achieved TFLOP/s, peak memory.

    python benchmarks/gpu_check.py                      (defaults: ViLT-B/32, 384 px, bf16, 300 steps, cuda)
    python benchmarks/gpu_check.py --steps 2 --layers 1 --hidden 64 --heads 2 --intermediate 128 \\
        --image-size 64 --batch-size 2 --gemm-size 256 --device cpu      (a smoke test anywhere)

Depends on torch and transformers only (no download, no vlbench): the model is
``transformers.ViltForQuestionAnswering`` built from ``ViltConfig`` defaults (hidden 768, 12 layers, 12
heads, patch 32, 384x384 images, 40 text tokens, VQA v2's 3,129 answers) with random weights, trained
with AdamW on synthetic batches under bf16 autocast. Printed: examples/second, the FLOPs of one
training step (``torch.utils.flop_counter``), the achieved TFLOP/s, the rate of a large bf16 matmul
measured in the same run (8192^3 by default) and their ratio, and the peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """FLOP/s of ``repeats`` square matmuls of side ``size`` (warmed up first)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def build_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """ViltForQuestionAnswering from a config with random weights (ViltConfig defaults unless overridden)."""
    from transformers import ViltConfig, ViltForQuestionAnswering

    config = ViltConfig(
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.intermediate, image_size=args.image_size, patch_size=args.patch,
        max_position_embeddings=args.text_length, num_labels=args.answers,
    )
    torch.manual_seed(args.seed)
    return ViltForQuestionAnswering(config).to(device)


def synthetic_batches(args: argparse.Namespace, device: torch.device, count: int) -> list[dict[str, torch.Tensor]]:
    """Random questions, images and soft VQA targets, made once on the device."""
    generator = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(count):
        b = args.batch_size
        targets = torch.zeros(b, args.answers)
        targets[torch.arange(b), torch.randint(args.answers, (b,), generator=generator)] = 1.0
        batch = {
            "input_ids": torch.randint(1000, 30000, (b, args.text_length), generator=generator),
            "attention_mask": torch.ones(b, args.text_length, dtype=torch.long),
            "token_type_ids": torch.zeros(b, args.text_length, dtype=torch.long),
            "pixel_values": torch.randn(b, 3, args.image_size, args.image_size, generator=generator),
            "pixel_mask": torch.ones(b, args.image_size, args.image_size, dtype=torch.long),
            "labels": targets,
        }
        batches.append({k: v.to(device, non_blocking=True) for k, v in batch.items()})
    return batches


def main() -> None:
    """Run the check and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (kernels, allocator)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--text-length", type=int, default=40)
    parser.add_argument("--answers", type=int, default=3129)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="train the torch.compile'd model")
    parser.add_argument("--gemm-size", type=int, default=8192)
    parser.add_argument("--gemm-repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import transformers

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but no CUDA device is visible; use --device cpu for a smoke test.")
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (LayerNorm-adjacent matmuls) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    print(f"device: {device} ({name}); torch {torch.__version__}, transformers {transformers.__version__}")

    model = build_model(args, device)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: ViLT hidden {args.hidden}, {args.layers} layers, {args.heads} heads, patch {args.patch}, "
          f"{args.image_size}px, {args.text_length} tokens, {args.answers} answers: {params / 1e6:.1f}M parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01,
                                  fused=device.type == "cuda")
    batches = synthetic_batches(args, device, 4)
    step_model = torch.compile(model) if args.compile else model

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast():
            loss = step_model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    counter = FlopCounterMode(display=False)
    with counter:  # forward + backward of one step, on the eager model (same math as the compiled one)
        with autocast():
            loss = model(**batches[0]).loss
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses = []
    start = time.perf_counter()
    for i in range(args.steps):
        losses.append(step(batches[i % len(batches)]))
    _sync(device)
    seconds = time.perf_counter() - start
    final = float(torch.stack(losses).float()[-1]) if losses else float("nan")
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS"

    peak_rate = matmul_rate(device, dtype, args.gemm_size, args.gemm_repeats)
    achieved = flops * args.steps / seconds
    print(f"steps: {args.steps} timed after {args.warmup} warm-up, batch {args.batch_size}, {args.precision}"
          f"{', compiled' if args.compile else ''}; final loss {final:.4f}")
    print(f"examples/s          : {args.batch_size * args.steps / seconds:.1f}")
    print(f"FLOPs per step      : {flops / 1e9:.2f} GFLOP (forward + backward, torch.utils.flop_counter)")
    print(f"achieved            : {achieved / 1e12:.3f} TFLOP/s")
    print(f"{args.precision} matmul {args.gemm_size}^3: {peak_rate / 1e12:.3f} TFLOP/s")
    print(f"model FLOPs utilisation (achieved / matmul rate): {achieved / peak_rate:.1%}")
    print(f"peak memory         : {peak / 2**30:.2f} GiB ({kind})")
    if not torch.isfinite(torch.tensor(final)):
        raise SystemExit("error: the training loss is not finite")


if __name__ == "__main__":
    main()
