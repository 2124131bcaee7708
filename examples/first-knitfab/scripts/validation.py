"""Evaluate a trained model on a QMNIST dataset, or show one image and its prediction.

python -u validation.py --dataset /in/dataset --model /in/model/model.pth [--id N]
"""

import argparse

import torch
from model import MyMnistModel, fix_seeds
from qmnist import load


def ascii_art(image: torch.Tensor) -> str:
    return "\n".join("".join("#" if v > 0.5 else " " for v in row.tolist()) for row in image[0])


@torch.no_grad()
def show(model, images, labels, index):
    print("=== image ===")
    print(ascii_art(images[index]))
    print("=== ===== ===")
    prediction = model(images[index : index + 1]).argmax(1)
    print(f"Prediction: {prediction}, Ground Truth: {labels[index].item()}")


@torch.no_grad()
def evaluate(model, images, labels, batch_size=1000):
    correct = 0
    for start in range(0, len(labels), batch_size):
        logit = model(images[start : start + batch_size])
        correct += (logit.argmax(1) == labels[start : start + batch_size]).sum().item()
        seen = min(start + batch_size, len(labels))
        print(f"Accuracy (at {seen} images): {correct / seen}")
    print("=== Validation Result ===")
    print(f"Accuracy: {correct / len(labels)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder with images.gz and labels.gz")
    parser.add_argument("--model", required=True, help="model.pth written by train.py")
    parser.add_argument("--id", type=int, help="show this image, with the prediction and the ground truth")
    args = parser.parse_args()

    fix_seeds(0)
    images, labels = load(args.dataset)
    model = MyMnistModel()
    model.load_state_dict(torch.load(args.model, weights_only=True))
    model.eval()
    if args.id is not None:
        show(model, images, labels, args.id)
    else:
        evaluate(model, images, labels)


if __name__ == "__main__":
    main()
