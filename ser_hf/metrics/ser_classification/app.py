import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("ser_classification.py")
launch_gradio_widget(module)
