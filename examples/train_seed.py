"""Train the seed 2-2-2 network the classic way and compare with the published result.

Plain SGD, learning rate 0.5, 10,000 steps on the network's single example (its inputs'
defaults); only the weights W_h and W_o are updated, the biases stay 0.35 and 0.60.
Matt Mazur, "A Step by Step Backpropagation Example" (2015), reports the total error
0.0000351085 after 10,000 rounds. The same run from the command line:

    graphengine train examples/seed_network.json --lr 0.5 --steps 10000 \\
        --freeze b_h --freeze b_o -o /tmp/seed.trained.json

Run:  python examples/train_seed.py
"""

from __future__ import annotations

from pathlib import Path

import graphengine

PUBLISHED_ERROR = 0.0000351085  # error at round 10,000 in Mazur's post

graph = graphengine.load(Path(__file__).resolve().parent / "seed_network.json")
result = graphengine.train(graph, steps=10_000, lr=0.5, freeze=["b_h", "b_o"], optimizer="sgd", progress="quiet")
at_10000 = result.history[-1]["loss"]  # the loss computed in step 10,000 (before its update)
print(f"error at step 10,000:            {at_10000:.10f}  (published: {PUBLISHED_ERROR:.10f})")
print(f"error after the 10,000th update: {result.final['loss']:.10f}")
print(f"outputs now: {graph.run()['y'].round(9).tolist()}  (targets [0.01, 0.99])")
