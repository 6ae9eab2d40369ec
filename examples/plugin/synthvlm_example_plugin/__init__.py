"""An example synthvlm-builder plugin (README.md): each module is one component, found through this
package's `synthvlm_builder.plugins` entry points; nothing here is imported by synthvlm-builder itself."""

__version__ = "0.1.0"
