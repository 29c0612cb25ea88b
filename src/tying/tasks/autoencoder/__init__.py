"""Tied autoencoders on handwritten digits (``task = "autoencoder"``): the task
(:class:`AutoEncoderTask`) and its data (scikit-learn's bundled digits). The model is
:class:`tying.models.AutoEncoder`."""

from tying.tasks.autoencoder.digits import DIGIT_PIXELS, load_digit_images
from tying.tasks.autoencoder.task import SHOWN, AutoEncoderModel, AutoEncoderTask, AutoEncoderTrain, DigitSplits, DigitsData

__all__ = [
    "DIGIT_PIXELS",
    "SHOWN",
    "AutoEncoderModel",
    "AutoEncoderTask",
    "AutoEncoderTrain",
    "DigitSplits",
    "DigitsData",
    "load_digit_images",
]
